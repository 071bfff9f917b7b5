"""Backbones: torchvision ResNets by name, and every timm model as ``timm/<name>``.

Each maps images ``[B,3,H,W]`` to a feature map ``[B,D,h,w]`` and has ``out_dim`` (D).
``pretrained: PATH`` loads a local weights file (nothing is downloaded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class BackboneConfig:
    """``pretrained``: a local weights file (torchvision/timm ``.pth`` or ``.safetensors``)."""

    pretrained: str | None = field(default=None, metadata={"path": "file"})


def _resnet(arch: str) -> Plugin:
    def build(cfg: BackboneConfig):
        from .resnet import ResNetBackbone

        return ResNetBackbone(arch, cfg.pretrained)

    depth = arch.removeprefix("resnet")
    return Plugin("backbone", arch, f"torchvision ResNet-{depth} up to layer4", BackboneConfig, build)


resnet18 = _resnet("resnet18")
resnet34 = _resnet("resnet34")
resnet50 = _resnet("resnet50")
resnet101 = _resnet("resnet101")
resnet152 = _resnet("resnet152")


def _build_timm(cfg: BackboneConfig, variant: str | None = None):
    from mlcore import MlcoreError

    from .timm_backbone import TimmBackbone

    if not variant:
        raise MlcoreError("backbone 'timm' needs a model name: write timm/<name>, e.g. timm/convnext_tiny")
    return TimmBackbone(variant, cfg.pretrained)


timm = Plugin("backbone", "timm", "any timm model's features, as timm/<model name>", BackboneConfig,
              _build_timm, namespace=True)
