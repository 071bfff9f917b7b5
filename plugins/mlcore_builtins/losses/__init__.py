"""Losses: ``loss(logits [B,C], targets [B,C]) -> scalar``.

``bce`` (the seed's default), ``focal``, ``asl`` (Asymmetric Loss) and the seed's
``tencent`` adaptive-weight loss. A loss with state (``tencent``) has ``state_dict()``
and ``load_state_dict()``; the trainer saves it with checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlcore import Plugin


def _pos_weight(values, num_classes: int, what: str):
    """A per-class weight tensor from a list (one per class) or one number for all."""
    import torch

    from mlcore import ConfigError

    if values is None:
        return None
    if isinstance(values, (int, float)):
        values = [float(values)] * num_classes
    if len(values) != num_classes:
        raise ConfigError(f"{what}.pos_weight: {len(values)} weights given for {num_classes} classes")
    return torch.tensor(values, dtype=torch.float32)


def _non_negative(obj, *names):
    return [(n, f"must be >= 0, got {getattr(obj, n)}") for n in names if getattr(obj, n) < 0]


@dataclass
class BCEConfig:
    """``pos_weight``: one weight per class (or one for all) for the positive term;
    ``reduction``: ``mean`` over all B×C entries (the seed's) or ``sum``."""

    pos_weight: list[float] | float | None = None
    reduction: Literal["mean", "sum"] = "mean"

    def validate(self):
        pw = self.pos_weight if isinstance(self.pos_weight, list) else [self.pos_weight or 0]
        return [("pos_weight", "weights must be >= 0")] if any(w < 0 for w in pw) else []


@dataclass
class FocalConfig:
    """Focal loss: ``gamma`` focusing, ``alpha`` weight of positives (null: none)."""

    gamma: float = 2.0
    alpha: float | None = 0.25
    reduction: Literal["mean", "sum"] = "mean"

    def validate(self):
        out = _non_negative(self, "gamma")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            out.append(("alpha", f"must be in [0, 1], got {self.alpha}"))
        return out


@dataclass
class ASLConfig:
    """Asymmetric Loss: ``gamma_neg``/``gamma_pos`` focusing, ``clip`` probability
    margin for negatives, ``no_grad_focusing`` (the official disable_torch_grad_focal_loss);
    defaults are the paper's for multi-label classification."""

    gamma_neg: float = 4.0
    gamma_pos: float = 1.0
    clip: float = 0.05
    eps: float = 1e-8
    no_grad_focusing: bool = False
    reduction: Literal["mean", "sum"] = "sum"

    def validate(self):
        out = _non_negative(self, "gamma_neg", "gamma_pos", "clip")
        if self.clip >= 1:
            out.append(("clip", f"must be < 1, got {self.clip}"))
        return out


@dataclass
class TencentConfig:
    """The seed's TencentLoss; ``pos_weight`` 12 for every class by default."""

    pos_weight: list[float] | float = 12.0


def _build_bce(cfg: BCEConfig, num_classes: int):
    from .losses import BCELoss

    return BCELoss(_pos_weight(cfg.pos_weight, num_classes, "loss"), cfg.reduction)


def _build_focal(cfg: FocalConfig):
    from .losses import FocalLoss

    return FocalLoss(cfg.gamma, cfg.alpha, cfg.reduction)


def _build_asl(cfg: ASLConfig):
    from .losses import AsymmetricLoss

    return AsymmetricLoss(cfg.gamma_neg, cfg.gamma_pos, cfg.clip, cfg.eps, cfg.no_grad_focusing, cfg.reduction)


def _build_tencent(cfg: TencentConfig, num_classes: int):
    from .losses import TencentLoss

    return TencentLoss(num_classes, _pos_weight(cfg.pos_weight, num_classes, "loss"))


bce = Plugin("loss", "bce", "binary cross-entropy on logits (optional per-class pos_weight)", BCEConfig, _build_bce)
focal = Plugin("loss", "focal", "focal loss (gamma, alpha)", FocalConfig, _build_focal)
asl = Plugin("loss", "asl", "Asymmetric Loss (Ridnik et al., ICCV 2021)", ASLConfig, _build_asl)
tencent = Plugin("loss", "tencent", "the seed's adaptive-weight TencentLoss", TencentConfig, _build_tencent)
