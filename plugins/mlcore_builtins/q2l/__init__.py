"""``q2l``: Query2Label (Liu et al., 2021, "Query2Label: A Simple Transformer Way to
Multi-Label Classification") — what the official code (github SlongLiu/query2labels,
``lib/models/query2label.py``, ``transformer.py``) computes, with its released models'
settings as defaults.

Any backbone by name (the official: ``resnet101``); the transformer's width is the
backbone's ``out_dim`` (the official fixes it at 2048 and has no input projection). Label
queries (one learnable embedding per class) cross-attend into a transformer encoding of the
feature map with a sine position encoding, and one linear classifier per label reads each
decoded query. The trunk is frozen as the official trains it: all BatchNorms (frozen
statistics and affine) and a ResNet's conv1 and layer1. ``weights`` loads a whole trained
model: mlcore's checkpoints and the official ones (``{'epoch', 'arch', 'state_dict',
'best_mAP', 'optimizer'}``, with or without ``module.``; the optimizer is ignored and the
stored position encoding, made for one image size, dropped: it is computed for each input).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlcore import Plugin, weights_classes_field

if TYPE_CHECKING:  # the plugin module stays light: torch loads when a model is built
    import mlcore

    from .model import Query2Label


@dataclass
class Q2LConfig:
    """``backbone``: a backbone plugin name; ``hidden_dim``: the transformer width — the
    backbone's ``out_dim`` (null: take it; another value is an error, there is no input
    projection); ``heads``, ``ff_dim``, ``enc_layers``, ``dec_layers``, ``dropout``: the
    transformer (official: 4, 8192, 1, 2, 0.1; post-norm, no decoder self-attention);
    ``pretrained``: local ImageNet weights for the backbone (torchvision's ResNet-101
    file); ``weights``: a whole trained model (mlcore checkpoint or an official Query2Label
    file); ``weights_classes``: a text file of the class names of ``weights``, one a line,
    in the file's order, when they are not the dataset's (the class-indexed entries are
    matched by name)."""

    backbone: str = field(default="resnet101", metadata={"plugin": "backbone"})
    hidden_dim: int | None = None
    heads: int = 4
    ff_dim: int = 8192
    enc_layers: int = 1
    dec_layers: int = 2
    dropout: float = 0.1
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()

    def validate(self) -> list[tuple[str, str]]:
        out = []
        for key in ("heads", "ff_dim", "dec_layers"):
            if getattr(self, key) < 1:
                out.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.enc_layers < 0:
            out.append(("enc_layers", f"must be >= 0, got {self.enc_layers}"))
        if not 0 <= self.dropout < 1:
            out.append(("dropout", f"must be in [0, 1), got {self.dropout}"))
        if self.hidden_dim is not None:
            if self.hidden_dim < 4 or self.hidden_dim % 4:
                out.append(("hidden_dim", f"must be a positive multiple of 4 (the sine position encoding), "
                                          f"got {self.hidden_dim}"))
            elif self.heads >= 1 and self.hidden_dim % self.heads:
                out.append(("heads", f"must divide hidden_dim ({self.hidden_dim}), got {self.heads}"))
        return out


def build(cfg: Q2LConfig, num_classes: int, info: mlcore.LabelInfo | None = None) -> Query2Label:
    """The model for ``num_classes`` labels; ``info`` (the train split's LabelInfo) names them,
    for ``weights_classes``."""
    import mlcore

    from .model import Query2Label

    params = {"pretrained": cfg.pretrained} if cfg.pretrained else {}
    backbone = mlcore.create_backbone(cfg.backbone, **params)
    model = Query2Label(backbone, num_classes, hidden=cfg.hidden_dim, heads=cfg.heads, ff_dim=cfg.ff_dim,
                        enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dropout=cfg.dropout)
    if cfg.weights:
        # with weights_classes, the core matches the class-indexed entries (Query2Label.class_axes)
        # to the dataset's classes by name; without, the file's classes are the dataset's, in order
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes)
    return model


plugin = Plugin("model", "q2l", "Query2Label: label queries decoded by a transformer over the feature map (2021)",
                Q2LConfig, build)
