"""The losses' formulas on logits [B, C] and targets [B, C]: 1 positive, 0 negative,
-1 unknown (partial labels). An unknown entry adds nothing to a loss, and a ``mean`` is
over the known entries (all of them when none is unknown: the plain mean)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def known_targets(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets with unknown entries as 0, the known mask as 0./1.)``, without a
    device sync: the mask is applied whether or not some entry is unknown."""
    known = (targets >= 0).to(targets.dtype)
    return targets.clamp(min=0), known


def _reduce(loss: torch.Tensor, reduction: str, known: torch.Tensor) -> torch.Tensor:
    loss = loss * known
    return loss.sum() if reduction == "sum" else loss.sum() / known.sum().clamp(min=1)


def bce(logits, targets, pos_weight: torch.Tensor | None = None, weight: torch.Tensor | None = None,
        reduction: str = "mean"):
    """Binary cross-entropy on logits per entry (``pos_weight`` per class on the positive
    term, ``weight`` per entry), unknown entries left out."""
    targets, known = known_targets(targets)
    loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, pos_weight=pos_weight,
                                              reduction="none")
    return _reduce(loss, reduction, known)


def focal(logits, targets, gamma: float = 2.0, alpha: float | None = 0.25, reduction: str = "mean"):
    """Focal loss (Lin et al., 2017): −α_t (1 − p_t)^γ log p_t per label."""
    targets, known = known_targets(targets)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction, known)


def asymmetric(logits, targets, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05,
               eps: float = 1e-8, no_grad_focusing: bool = False, reduction: str = "sum"):
    """Asymmetric loss (Ridnik et al., ICCV 2021), as its official code computes it.

    Negatives' probabilities are shifted by ``clip`` (the probability margin) and both
    sides are focused, γ− for negatives and γ+ for positives; ``no_grad_focusing`` keeps
    the focusing weights out of the gradient (the official
    ``disable_torch_grad_focal_loss``). The official reduction is a sum.
    """
    targets, known = known_targets(targets)
    p = torch.sigmoid(logits)
    p_neg = 1 - p
    if clip and clip > 0:
        p_neg = (p_neg + clip).clamp(max=1)
    loss = targets * torch.log(p.clamp(min=eps)) + (1 - targets) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not no_grad_focusing):
            p_t = p * targets + p_neg * (1 - targets)
            gamma = gamma_pos * targets + gamma_neg * (1 - targets)
            weight = torch.pow(1 - p_t, gamma)
        loss = loss * weight
    return -_reduce(loss, reduction, known)


class TencentWeights:
    """The seed's adaptive weights (``TencentLoss``): while the set of labels present in
    the batch stays the same, a counter t grows and the positive/negative weights decay
    as max(0.01, log10(10/(0.01+t))) and max(0.01, log10(10/(8+t))); a new set resets t.
    The counter and the last set are state, saved with checkpoints."""

    def __init__(self, num_classes: int):
        self.previous = torch.full((num_classes,), -1, dtype=torch.int32)
        self.t = 0

    def __call__(self, targets: torch.Tensor) -> torch.Tensor:
        present = (targets == 1).any(0).to(torch.int32).cpu()  # known positives only
        if torch.equal(present, self.previous):
            self.t += 1
        else:
            self.t, self.previous = 1, present
        pos = max(0.01, math.log10(10 / (0.01 + self.t)))
        neg = max(0.01, math.log10(10 / (8 + self.t)))
        return torch.where(targets == 1, torch.full_like(targets, pos), torch.full_like(targets, neg))

    def state_dict(self) -> dict:
        return {"previous": self.previous.clone(), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.previous, self.t = state["previous"].to(torch.int32), int(state["t"])
