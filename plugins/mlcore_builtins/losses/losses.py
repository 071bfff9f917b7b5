"""Loss objects: ``loss(logits, targets) -> scalar``; stateful ones have state_dict().

Every built-in loss leaves unknown targets (-1, partial labels) out: it declares
``handles_unknown = True``, which the trainer asks of a loss before it gives it a
dataset with unknown labels under ``data.unknown_labels: ignore``."""
from __future__ import annotations

import torch

from . import functional


class _Weighted:
    """Holds an optional per-class ``pos_weight`` and moves it to the logits' device."""

    def __init__(self, pos_weight: torch.Tensor | None):
        self.pos_weight = pos_weight

    def _pw(self, logits: torch.Tensor) -> torch.Tensor | None:
        if self.pos_weight is not None and self.pos_weight.device != logits.device:
            self.pos_weight = self.pos_weight.to(logits.device)
        return self.pos_weight


class BCELoss(_Weighted):
    """Binary cross-entropy on logits, per class."""
    handles_unknown = True

    def __init__(self, pos_weight=None, reduction: str = "mean"):
        super().__init__(pos_weight)
        self.reduction = reduction

    def __call__(self, logits, targets):
        return functional.bce(logits, targets, pos_weight=self._pw(logits), reduction=self.reduction)


class FocalLoss:
    handles_unknown = True

    def __init__(self, gamma: float, alpha: float | None, reduction: str):
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def __call__(self, logits, targets):
        return functional.focal(logits, targets, self.gamma, self.alpha, self.reduction)


class AsymmetricLoss:
    handles_unknown = True

    def __init__(self, gamma_neg: float, gamma_pos: float, clip: float, eps: float, no_grad_focusing: bool,
                 reduction: str):
        self.kw = dict(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, eps=eps,
                       no_grad_focusing=no_grad_focusing, reduction=reduction)

    def __call__(self, logits, targets):
        return functional.asymmetric(logits, targets, **self.kw)


class TencentLoss(_Weighted):
    """The seed's loss: BCE with a positive weight (12 by default) and adaptive per-entry
    weights that decay while the batches' label sets repeat."""

    handles_unknown = True

    def __init__(self, num_classes: int, pos_weight: torch.Tensor):
        super().__init__(pos_weight)
        self.weights = functional.TencentWeights(num_classes)

    def __call__(self, logits, targets):
        w = self.weights(targets).to(logits.dtype)
        return functional.bce(logits, targets, weight=w, pos_weight=self._pw(logits))

    def state_dict(self) -> dict:
        return self.weights.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.weights.load_state_dict(state)
