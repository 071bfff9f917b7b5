"""A plugin that fails to build is named in the error — the dataset, loss or metric that
failed, not the model that happened to need it first."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import mlcore
from mlcore.errors import MlcoreError
from mlcore.registry import Registry

from conftest import make_dist, run_cli, tiny_config, write_yaml


class GoodSet(torch.utils.data.Dataset):
    """Four black 8×8 images, two classes."""

    def __init__(self, split, transform=None, size: int = 4):
        self.classes = ["a", "b"]
        self.images = [f"{split}{i}.png" for i in range(size)]
        self.targets = np.eye(2, dtype=np.uint8)[np.arange(size) % 2]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.zeros(3, 8, 8, dtype=torch.uint8), torch.from_numpy(self.targets[i].astype(np.float32))


class TypoSet(GoodSet):
    def __init__(self, split, transform=None, size: int = 4):
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")


class ValSplitBroken(GoodSet):
    def __init__(self, split, transform=None, size: int = 4):
        if split == "val":
            raise KeyError("val")
        super().__init__(split, transform, size)


class UserMistakeSet(GoodSet):
    def __init__(self, split, transform=None, size: int = 4):
        raise MlcoreError("dataset root '/nowhere' does not exist")


class BadTargetsSet(GoodSet):
    def __init__(self, split, transform=None, size: int = 4):
        super().__init__(split, transform, size)
        self.targets = np.zeros((size, 5), dtype=np.uint8)  # 5 columns for 2 classes


class NoLengthSet:
    def __init__(self, split, transform=None):
        self.classes, self.images, self.targets = ["a", "b"], ["x"], np.zeros((1, 2))


class TinyModel(torch.nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)

    def forward(self, x):
        return self.fc(x.float().mean((2, 3)))


class BrokenLoss:
    def __init__(self, num_classes: int, weight: float = 1.0):
        raise ZeroDivisionError("division by zero")


class BrokenMetric:
    def __init__(self, num_classes: int):
        raise AttributeError("'NoneType' object has no attribute 'shape'")


class MistakenMetric:
    def __init__(self, num_classes: int):
        raise MlcoreError("metric 'picky' needs at least 3 classes")


def registry() -> Registry:
    """The installed plugins, plus these test plugins registered in-process."""
    reg = Registry()
    for name, obj in [("good", GoodSet), ("typo", TypoSet), ("valbroken", ValSplitBroken),
                      ("mistake", UserMistakeSet), ("badtargets", BadTargetsSet), ("nolen", NoLengthSet)]:
        reg.register("dataset", name, obj)
    reg.register("model", "tiny", TinyModel)
    reg.register("loss", "broken", BrokenLoss)
    reg.register("metric", "broken", BrokenMetric)
    reg.register("metric", "picky", MistakenMetric)
    reg.register("metric", "fine", lambda num_classes: object())
    return reg


def config(tmp_path, dataset="good", **over) -> dict:
    cfg = {"dataset": {"name": dataset}, "model": {"name": "tiny"}, "loss": {"name": "bce"},
           "metrics": ["fine"], "optimizer": {"name": "sgd", "lr": 0.1}, "output_dir": str(tmp_path / "run")}
    cfg.update(over)
    return cfg


@pytest.fixture
def reg():
    return registry()


def test_a_dataset_failure_is_the_dataset_s_not_the_model_s(tmp_path, reg):
    exp = mlcore.build(config(tmp_path, "typo"), registry=reg)
    with pytest.raises(MlcoreError) as err:
        exp.model  # the model needs the train split's labels: the dataset is built here
    msg = str(err.value)
    assert msg == ("dataset 'typo' failed to build the 'train' split: TypeError: expected str, bytes or "
                   "os.PathLike object, not NoneType")
    assert "model" not in msg
    assert isinstance(err.value.__cause__, TypeError)
    with pytest.raises(MlcoreError, match=r"^dataset 'typo' failed to build the 'train' split: TypeError"):
        exp.loss


def test_the_failing_split_is_named(tmp_path, reg):
    exp = mlcore.build(config(tmp_path, "valbroken"), registry=reg)
    assert exp.model is not None
    want = r"^dataset 'valbroken' failed to build the 'val' split: KeyError: 'val'$"
    with pytest.raises(MlcoreError, match=want):
        exp.evaluate()


def test_a_user_mistake_passes_through_unchanged(tmp_path, reg):
    exp = mlcore.build(config(tmp_path, "mistake"), registry=reg)
    with pytest.raises(MlcoreError) as err:
        exp.model
    assert str(err.value) == "dataset root '/nowhere' does not exist"
    exp = mlcore.build(config(tmp_path, metrics=["picky"]), registry=reg)
    with pytest.raises(MlcoreError) as err:
        exp.metrics
    assert str(err.value) == "metric 'picky' needs at least 3 classes"


def test_unusable_dataset_objects_are_the_dataset_s(tmp_path, reg):
    exp = mlcore.build(config(tmp_path, "badtargets"), registry=reg)
    want = (r"^dataset 'badtargets': the targets of split 'train' are unusable: "
            r"ValueError: targets must be N×2")
    with pytest.raises(MlcoreError, match=want) as err:
        exp.model
    assert isinstance(err.value.__cause__, ValueError)
    exp = mlcore.build(config(tmp_path, "nolen"), registry=reg)
    with pytest.raises(MlcoreError, match=r"^dataset 'nolen' gave an object without '__len__'"):
        exp.model


def test_loss_and_metric_failures_name_them(tmp_path, reg):
    exp = mlcore.build(config(tmp_path, loss={"name": "broken", "weight": 2.0}), registry=reg)
    assert exp.model is not None  # the model is fine
    with pytest.raises(MlcoreError) as err:
        exp.loss
    assert str(err.value) == "loss 'broken' failed to build: ZeroDivisionError: division by zero"
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    exp = mlcore.build(config(tmp_path, metrics=["fine", "broken"]), registry=reg)
    with pytest.raises(MlcoreError) as err:
        exp.metrics
    assert str(err.value) == ("metric 'broken' failed to build: "
                              "AttributeError: 'NoneType' object has no attribute 'shape'")
    assert isinstance(err.value.__cause__, AttributeError)


def test_the_cli_names_a_failing_dataset_with_exit_2(tmp_path):
    site = make_dist(tmp_path / "site", "mlcore-brokenset",
                     {"mlcore.datasets": {"brokenset": "brokenset_mod:Broken"}},
                     {"brokenset_mod": """
                         class Broken:
                             def __init__(self, split, transform=None, root: str = "x"):
                                 raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
                     """})
    cfg = tiny_config(tmp_path / "run", dataset={"name": "brokenset"})
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    proc = run_cli("train", path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "dataset 'brokenset' failed to build the 'train' split: TypeError: unsupported" in proc.stderr
    assert "model" not in proc.stderr and "Traceback" not in proc.stderr
