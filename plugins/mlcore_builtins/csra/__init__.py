"""``csra``: class-specific residual attention (Zhu & Wu, "Residual Attention: A Simple
but Effective Method for Multi-Label Recognition", ICCV 2021), computing what the
official code (github.com/Kevinz-code/CSRA, ``pipeline/csra.py``) computes.

Any backbone by name (the official: ``resnet101``; its feature width, fixed at 2048 in
the official code, is the backbone's ``out_dim``). ``heads`` CSRA heads, each with the
temperature the official code fixes for that head count (:data:`TEMPERATURES`; 99 means
max pooling over positions), their logits summed; ``lam`` weighs the attention logit
against the average-pooled one. ``weights`` loads a whole trained model: mlcore's
checkpoints and the official ones (bare state dicts, with or without ``module.``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin, weights_classes_field

#: the official ``MHA.temp_settings``: the softmax temperature of each head by head
#: count; ``99`` is the official sentinel for max pooling (T → ∞)
TEMPERATURES: dict[int, tuple[int, ...]] = {
    1: (1,),
    2: (1, 99),
    4: (1, 2, 4, 99),
    6: (1, 2, 3, 4, 5, 99),
    8: (1, 2, 3, 4, 5, 6, 7, 99),
}


@dataclass
class CSRAConfig:
    """``backbone``: a backbone plugin name; ``heads``: 1, 2, 4, 6 or 8 (the official
    temperature settings); ``lam``: λ, the weight of the attention logit (official: 0.1
    on VOC2007 with 1 head, 0.5 on COCO with 4); ``pretrained``: local ImageNet weights
    for the backbone (torchvision's ResNet-101 file, or the official CutMix one);
    ``weights``: a whole trained model (mlcore checkpoint or an official CSRA file);
    ``weights_classes``: a text file of the labels of ``weights`` in its output order,
    when that is not the dataset's (one name per line; the heads are reordered by name);
    ``freeze``: which part of the backbone does not train (official: ``none``)."""

    backbone: str = field(default="resnet101", metadata={"plugin": "backbone"})
    heads: int = 1
    lam: float = 0.1
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    freeze: Literal["none", "all", "all_but_last"] = "none"

    def validate(self):
        out = []
        if self.heads not in TEMPERATURES:
            counts = ", ".join(map(str, TEMPERATURES))
            out.append(("heads", f"must be one of {counts} (the official temperature settings), "
                                 f"got {self.heads}"))
        if self.lam < 0:
            out.append(("lam", f"must be >= 0, got {self.lam}"))
        return out


def build(cfg: CSRAConfig, num_classes: int, info=None):
    import mlcore

    from .model import CSRA

    params = {"pretrained": cfg.pretrained} if cfg.pretrained else {}
    backbone = mlcore.create_backbone(cfg.backbone, freeze=cfg.freeze, **params)
    model = CSRA(backbone, num_classes, TEMPERATURES[cfg.heads], cfg.lam)
    if cfg.weights:
        # a file of another head count differs by its classifier.<i> keys: say which setting
        # decides them (lam is not stored: nothing can check it)
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes,
                            hint=f"another model, another number of labels, or another number of heads than "
                                 f"this config's heads: {cfg.heads}?")
    return model


plugin = Plugin("model", "csra", "CSRA: class-specific residual attention heads on any backbone (ICCV 2021)",
                CSRAConfig, build)
