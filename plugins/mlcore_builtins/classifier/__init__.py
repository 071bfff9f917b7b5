"""``classifier``: any backbone + global average pooling + a linear layer (the seed's
ResNet-101 baseline), and ``resnet18`` … ``resnet152`` as ready-made models of that kind."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin, weights_classes_field


@dataclass
class ClassifierConfig:
    """``backbone``: a backbone plugin name (``resnet101``, ``timm/convnext_tiny``, …);
    ``pretrained``: local weights for it; ``weights``/``weights_classes``: as the ResNet
    models'; ``dropout`` before the linear layer; ``freeze``:
    which part of the backbone does not train (``all_but_last``: all but its last stage)."""

    backbone: str = field(default="resnet50", metadata={"plugin": "backbone"})
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    dropout: float = 0.0
    freeze: Literal["none", "all", "all_but_last"] = "none"

    def validate(self):
        return [] if 0 <= self.dropout < 1 else [("dropout", f"must be in [0, 1), got {self.dropout}")]


@dataclass
class ResNetConfig:
    """``pretrained``: local torchvision ImageNet weights for the backbone (e.g.
    ``resnet101-63fe2227.pth``); ``weights``: a whole trained model (an mlcore checkpoint,
    or the seed's ResNet101 file); ``weights_classes``: the labels of ``weights`` in its
    output order, one per line, when that is not the dataset's (``fc`` is reordered by
    name); ``freeze``: which part of the backbone does not train
    (``all_but_last``: all but ``layer4``, the seed's fine-tuning)."""

    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    dropout: float = 0.0
    freeze: Literal["none", "all", "all_but_last"] = "none"

    def validate(self):
        return [] if 0 <= self.dropout < 1 else [("dropout", f"must be in [0, 1), got {self.dropout}")]


def _make(backbone_name: str, cfg, num_classes: int, info=None):
    import mlcore

    from .model import Classifier

    params = {"pretrained": cfg.pretrained} if cfg.pretrained else {}
    backbone = mlcore.create_backbone(backbone_name, freeze=cfg.freeze, **params)
    model = Classifier(backbone, num_classes, cfg.dropout)
    if cfg.weights:
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes)
    return model


def _build_classifier(cfg: ClassifierConfig, num_classes: int, info=None):
    return _make(cfg.backbone, cfg, num_classes, info)


classifier = Plugin("model", "classifier", "backbone + global average pool + linear layer",
                    ClassifierConfig, _build_classifier)


def _resnet(arch: str) -> Plugin:
    def build(cfg: ResNetConfig, num_classes: int, info=None):
        return _make(arch, cfg, num_classes, info)

    depth = arch.removeprefix("resnet")
    return Plugin("model", arch, f"ResNet-{depth} classifier (torchvision architecture)", ResNetConfig, build)


resnet18 = _resnet("resnet18")
resnet34 = _resnet("resnet34")
resnet50 = _resnet("resnet50")
resnet101 = _resnet("resnet101")
resnet152 = _resnet("resnet152")
