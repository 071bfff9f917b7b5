"""mlcore.weights: one reader of weight files, layouts that rename other code's keys,
strict loading whose errors name every culprit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mlcore
from mlcore import MlcoreError, WeightLayout

#: a file from "other code": the body called ``net``, the head ``net.fc``, plus an extra
OTHER = WeightLayout("other code", detect="net.", rename=(("net.fc.", "head."), ("net.", "body.")),
                     drop=("net.aux.",))


class Tiny(nn.Module):
    weight_layouts = (OTHER,)

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.told = []

    def weights_loaded(self, layout):
        self.told.append(layout)


def own_state(seed=0) -> dict:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in Tiny().state_dict().items()}


def same(model: nn.Module, state: dict) -> bool:
    return state.keys() == model.state_dict().keys() and all(torch.equal(model.state_dict()[k], v)
                                                             for k, v in state.items())


def test_layout_renames_by_first_matching_prefix_and_drops():
    state = {"net.fc.weight": 1, "net.weight": 2, "net.aux.w": 3, "other.x": 4}
    assert OTHER.matches(state) and not OTHER.matches({"body.weight": 1})
    assert OTHER.apply(state) == {"head.weight": 1, "body.weight": 2, "other.x": 4}
    clash = WeightLayout("clash", detect="a.", rename=(("a.", "b."),))
    with pytest.raises(MlcoreError, match=r"layout 'clash' reads both 'a.x' and 'b.x' as 'b.x'"):
        clash.apply({"a.x": 1, "b.x": 2})


def test_a_file_in_a_declared_layout_and_one_in_the_own_layout_load(tmp_path):
    want = own_state(1)
    foreign = {"net." + k[len("body."):] if k.startswith("body.") else "net.fc." + k[len("head."):]: v
               for k, v in want.items()}
    foreign["net.aux.scale"] = torch.ones(3)  # a part the model has no place for: dropped
    torch.save({"epoch": 3, "state_dict": foreign, "best_mAP": np.float64(0.5)}, tmp_path / "other.pth.tar")
    model = Tiny()
    assert mlcore.load_weights(model, tmp_path / "other.pth.tar") is OTHER
    assert model.told == [OTHER] and same(model, want)

    torch.save(want, tmp_path / "own.pth")
    fresh = Tiny()
    assert mlcore.load_weights(fresh, str(tmp_path / "own.pth")) is None
    assert fresh.told == [None] and same(fresh, want)

    from_dict = Tiny()  # a loaded state dict works as well as a path
    assert mlcore.load_weights(from_dict, foreign) is OTHER and same(from_dict, want)
    with pytest.raises(MlcoreError, match="not in the model: net."):  # layouts given: none
        mlcore.load_weights(Tiny(), foreign, layouts=())


def test_mismatch_names_the_parameter_and_both_shapes(tmp_path):
    state = own_state()
    state["head.weight"] = torch.zeros(5, 4)
    state["head.extra"] = torch.zeros(1)
    del state["body.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(MlcoreError) as err:
        mlcore.load_weights(Tiny(), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "bad.pth' does not fit the model (another model or another number of labels?)" in msg
    assert "head.weight: checkpoint has shape (5, 4), the model (2, 4)" in msg
    assert "missing from the checkpoint: body.bias" in msg and "not in the model: head.extra" in msg
    foreign = {"net." + k[len("body."):]: v for k, v in own_state().items() if k.startswith("body.")}
    with pytest.raises(MlcoreError, match=r"(?s)missing from the checkpoint: head.weight.*"
                                          r"read as the other code layout"):
        mlcore.load_weights(Tiny(), foreign)
    # ignore: the replaced head is left out on both sides
    model = Tiny()
    body = {k: v for k, v in own_state(2).items() if k.startswith("body.")}
    mlcore.load_state(model, body, "x", ignore=("head.",))
    assert torch.equal(model.body.weight, own_state(2)["body.weight"])


def test_safetensors_and_module_prefixed_files(tmp_path):
    from safetensors.torch import save_file

    want = own_state(3)
    save_file({"module." + k: v.contiguous() for k, v in want.items()}, str(tmp_path / "w.safetensors"))
    read = mlcore.read_weights(tmp_path / "w.safetensors")
    assert read.keys() == want.keys() and all(torch.equal(read[k], want[k]) for k in want)
    model = Tiny()
    mlcore.load_weights(model, tmp_path / "w.safetensors")
    assert same(model, want)

    # DataParallel's module. prefix inside a model_state_dict wrapper, and an mlcore checkpoint
    dp = {"module." + k: v for k, v in want.items()}
    torch.save({"model_state_dict": dp, "step": 7}, tmp_path / "dp.pt")
    torch.save({"format": "mlcore-checkpoint", "model": want, "epoch": 2}, tmp_path / "ours.pt")
    for name in ("dp.pt", "ours.pt"):
        model = Tiny()
        mlcore.load_weights(model, tmp_path / name)
        assert same(model, want), name


def test_unreadable_empty_and_missing_files_say_what_is_wrong(tmp_path):
    torch.save({"epoch": 3, "best_mAP": 0.5}, tmp_path / "empty.pth")
    with pytest.raises(MlcoreError, match="empty.pth' holds no model weights"):
        mlcore.read_weights(tmp_path / "empty.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(MlcoreError, match="junk.safetensors' is not a readable safetensors file"):
        mlcore.read_weights(tmp_path / "junk.safetensors")
    with pytest.raises(MlcoreError, match=r"pretrained weights file '.*gone.pth' does not exist; "
                                          r"download .* local path"):
        mlcore.load_weights(Tiny(), tmp_path / "gone.pth", what="pretrained weights")


def test_a_checkpoint_file_gives_back_what_it_held(tmp_path):
    from mlcore.weights import CHECKPOINT_FORMAT, load_weights_file, safe_load

    want = own_state(4)
    torch.save({"format": CHECKPOINT_FORMAT, "model": want, "epoch": 5}, tmp_path / "ckpt.pt")
    model = Tiny()
    held = load_weights_file(model, str(tmp_path / "ckpt.pt"))
    assert held["epoch"] == 5 and same(model, want) and model.told == [None]
    assert safe_load(tmp_path / "ckpt.pt")["epoch"] == 5


class Graph(nn.Module):
    """Per-label tensors along one and two axes, and one that is not per label."""

    class_axes = {"head.weight": (0,), "head.bias": (0,), "A": (0, 1)}

    def __init__(self, c=4):
        super().__init__()
        self.head = nn.Linear(3, c)
        self.body = nn.Linear(c, c)  # c×c, but not per label: left as it is
        self.register_buffer("A", torch.zeros(c, c))


def test_weights_classes_reorders_every_per_label_axis_by_name(tmp_path):
    mine, theirs = ["cat", "dog", "car", "bus"], ["bus", "car", "cat", "dog"]
    src = Graph()
    with torch.no_grad():
        src.head.weight.copy_(torch.arange(12.).view(4, 3))
        src.head.bias.copy_(torch.arange(4.))
        src.A.copy_(torch.arange(16.).view(4, 4))
        src.body.weight.copy_(torch.arange(16.).view(4, 4))
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(theirs) + "\n\n")
    model = Graph()
    mlcore.load_weights(model, src.state_dict(), classes=mine, file_classes=names)
    where = [theirs.index(c) for c in mine]  # the file's row of each of my labels
    for i, j in enumerate(where):
        assert torch.equal(model.head.weight[i], src.head.weight[j]) and model.head.bias[i] == src.head.bias[j]
        for k, m in enumerate(where):
            assert model.A[i, k] == src.A[j, m]
    assert torch.equal(model.body.weight, src.body.weight)
    same = Graph()  # the same order: loaded as it is
    mlcore.load_weights(same, src.state_dict(), classes=theirs, file_classes=theirs)
    assert torch.equal(same.A, src.A)


def test_weights_classes_errors_list_the_names_and_the_model(tmp_path):
    state = Graph().state_dict()
    with pytest.raises(MlcoreError) as err:
        mlcore.load_weights(Graph(), state, classes=["a", "b", "c", "d"], file_classes=["a", "b", "x", "y"])
    msg = str(err.value)
    assert "not in weights_classes: c, d" in msg and "the model does not have: x, y" in msg
    with pytest.raises(MlcoreError, match="listed twice: a"):
        mlcore.load_weights(Graph(), state, classes=["a", "b", "c", "d"], file_classes=["a", "a", "c", "d"])
    with pytest.raises(MlcoreError, match=r"Tiny does not say which of its parameters .* \(no class_axes\)"):
        mlcore.load_weights(Tiny(), Tiny().state_dict(), classes=["a", "b"], file_classes=["b", "a"])
    with pytest.raises(MlcoreError, match="cannot read"):
        mlcore.load_weights(Graph(), state, classes=["a"], file_classes=tmp_path / "absent.txt")


def test_weights_classes_from_a_config_reorders_a_trained_classifier(tmp_path):
    from conftest import tiny_config

    exp = mlcore.build(tiny_config(tmp_path / "a"))
    classes = list(exp.classes)
    theirs = classes[::-1]
    state = {k: v.clone() for k, v in exp.model.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = state["fc.weight"].flip(0), state["fc.bias"].flip(0)
    torch.save(state, tmp_path / "theirs.pth")
    (tmp_path / "theirs.txt").write_text("\n".join(theirs))
    model = {"name": "resnet18", "weights": str(tmp_path / "theirs.pth"),
             "weights_classes": str(tmp_path / "theirs.txt")}
    again = mlcore.build(tiny_config(tmp_path / "b", model=model)).model
    assert torch.equal(again.fc.weight, exp.model.fc.weight) and torch.equal(again.fc.bias, exp.model.fc.bias)
    with pytest.raises(mlcore.ConfigError, match="model.weights_classes: names the label order of model.weights"):
        orphan = {"name": "csra", "backbone": "resnet18", "weights_classes": str(tmp_path / "theirs.txt")}
        mlcore.load_config(tiny_config(tmp_path / "c", model=orphan))


def test_optional_keys_of_a_layout_keep_the_models_own():
    layout = WeightLayout("old files", detect="old.", rename=(("old.", ""),), optional=(".num_batches_tracked",))

    class Norm(nn.Module):
        weight_layouts = (layout,)

        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

    model = Norm()
    state = {f"old.{k}": torch.full_like(v, 3) for k, v in Norm().state_dict().items() if "num_batches" not in k}
    mlcore.load_weights(model, state)
    assert torch.equal(model.bn.weight, torch.full((2,), 3.0)) and model.bn.num_batches_tracked == 0
    del state["old.bn.running_var"]  # only the optional suffixes may be absent
    with pytest.raises(MlcoreError, match="missing from the checkpoint: bn.running_var"):
        mlcore.load_weights(Norm(), state)
