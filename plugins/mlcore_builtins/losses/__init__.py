"""Losses: ``loss(logits [B,C], targets [B,C]) -> scalar``."""
from __future__ import annotations

from dataclasses import dataclass

from mlcore.plugin import Plugin


@dataclass
class BCEConfig:
    """``pos_weight``: one weight per class for the positive term (None: all 1);
    ``reduction``: ``mean`` over all B×C entries (the seed's) or ``sum``."""

    pos_weight: list[float] | None = None
    reduction: str = "mean"

    def validate(self):
        out = []
        if self.reduction not in ("mean", "sum"):
            out.append(("reduction", f"Unknown value {self.reduction!r}. Valid values are ['mean', 'sum']"))
        if self.pos_weight is not None and any(w < 0 for w in self.pos_weight):
            out.append(("pos_weight", "weights must be >= 0"))
        return out


def _build_bce(cfg: BCEConfig, num_classes: int):
    import torch

    from mlcore.errors import ConfigError

    pos_weight = None
    if cfg.pos_weight is not None:
        if len(cfg.pos_weight) != num_classes:
            raise ConfigError(f"loss.pos_weight: {len(cfg.pos_weight)} weights given for {num_classes} classes")
        pos_weight = torch.tensor(cfg.pos_weight, dtype=torch.float32)
    return BCELoss(pos_weight, cfg.reduction)


class BCELoss:
    """Binary cross-entropy on logits, per class (``torch.nn.functional`` under the hood)."""

    def __init__(self, pos_weight=None, reduction: str = "mean"):
        self.pos_weight, self.reduction = pos_weight, reduction

    def __call__(self, logits, targets):
        import torch.nn.functional as F

        pw = self.pos_weight
        if pw is not None and pw.device != logits.device:
            pw = self.pos_weight = pw.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw, reduction=self.reduction)


bce = Plugin("loss", "bce", "binary cross-entropy on logits (optional per-class pos_weight)", BCEConfig, _build_bce)
