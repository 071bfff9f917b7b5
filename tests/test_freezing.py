"""mlcore.freezing: one freezing policy for every model that takes a backbone; frozen
BatchNorm layers keep their statistics through train(), deepcopy (the EMA) and forward."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import mlcore
from mlcore import ConfigError, LabelInfo, MlcoreError

CLASSES = ["cat", "dog", "bird"]


class MyBackbone(nn.Module):
    """A third-party backbone to the documented contract: ``out_dim``, no ``last_stage``."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.out_dim = width

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


@pytest.fixture
def mybb():
    mlcore.register("backbone", "mybb", MyBackbone)
    return "mybb"


def label_info() -> LabelInfo:
    targets = (np.random.default_rng(0).random((20, len(CLASSES))) < 0.5).astype(np.uint8)
    return LabelInfo.from_targets(CLASSES, targets)


def build_quietly(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlcore.create(*args, **kwargs)
    return model, [w for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("model_name", ["ssgrl", "classifier"])
def test_a_backbone_without_stages_trains_whole_with_one_warning(tmp_path, mybb, model_name):
    if model_name == "ssgrl":  # SSGRL's default policy is all_but_last
        emb = tmp_path / "emb.npy"
        np.save(emb, np.random.default_rng(1).normal(size=(len(CLASSES), 6)).astype(np.float32))
        params = {"info": label_info(), "embeddings": str(emb), "hidden_dim": 8, "output_dim": 8}
    else:
        params = {"freeze": "all_but_last"}
    model, caught = build_quietly("model", model_name, backbone=mybb, num_classes=len(CLASSES), **params)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "MyBackbone declares no stages" in message and "trained whole" in message
    assert isinstance(model.backbone, MyBackbone)
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.train()
    before = model.backbone.bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.backbone.bn.training and not torch.equal(model.backbone.bn.running_mean, before)
    assert model.backbone.conv.weight.grad is not None


def running_stats(model: nn.Module) -> dict:
    return {n: b.clone() for n, b in model.named_buffers() if "running" in n or "num_batches" in n}


def changed(a: dict, b: dict) -> set[str]:
    """The batchnorm modules (``backbone.layer3.1.bn2``) whose statistics differ."""
    return {n.rsplit(".", 1)[0] for n in a if not torch.equal(a[n], b[n])}


def batchnorms(module: nn.Module, prefix: str) -> set[str]:
    return {f"{prefix}.{n}" for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_all_but_last_trains_only_layer4_and_frozen_batchnorm_keeps_its_statistics():
    torch.manual_seed(0)
    model = mlcore.create("model", "resnet18", num_classes=3, freeze="all_but_last")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[1] for n in trainable if n.startswith("backbone.")} == {"layer4"}
    assert {"fc.weight", "fc.bias"} <= trainable
    plain = mlcore.create("model", "resnet18", num_classes=3)
    assert model.state_dict().keys() == plain.state_dict().keys()  # freezing adds no keys
    assert all(p.requires_grad for p in plain.parameters())

    layer4 = batchnorms(model.backbone.layer4, "backbone.layer4")
    for m in (model, copy.deepcopy(model)):  # the EMA deep-copies the model
        m.train()
        before = running_stats(m)
        loss = m(torch.randn(4, 3, 32, 32)).sum()
        loss.backward()
        assert changed(before, running_stats(m)) == layer4  # the frozen ones kept theirs
        assert not m.backbone.bn1.training and not m.backbone.layer3[1].bn2.training
        assert m.backbone.layer4[0].bn1.training
        assert m.backbone.conv1.weight.grad is None and m.backbone.layer4[1].conv2.weight.grad is not None
    mlcore.freeze_backbone(model.backbone, "all_but_last")  # freezing twice is the same
    assert len(model.backbone.bn1._forward_pre_hooks) == 1


def test_all_freezes_every_backbone_parameter_and_batchnorm():
    model = mlcore.create("model", "resnet18", num_classes=3, freeze="all").train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.fc.parameters())
    before = running_stats(model)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert changed(before, running_stats(model)) == set()
    assert model.fc.weight.grad is not None


def test_unknown_policy_is_an_error_naming_the_valid_ones():
    backbone = mlcore.create_backbone("resnet18")
    with pytest.raises(MlcoreError, match=r"Unknown value 'most' for argument freeze. Valid values are \{"):
        mlcore.freeze_backbone(backbone, "most")
    with pytest.raises(ConfigError, match="freeze"):
        mlcore.create("model", "resnet18", num_classes=3, freeze="most")
    assert mlcore.FREEZE_POLICIES == ("none", "all", "all_but_last")
