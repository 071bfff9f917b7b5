"""The ``map`` and ``prf`` metrics: accumulate probabilities and targets, score at the end.

Both keep the scores of the evaluated samples only (N×C); ``compute()`` works on all of
them at once, vectorised in torch.
"""
from __future__ import annotations

import math

import torch

from .average_precision import average_precision


class _Accumulator:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``scores`` are probabilities [B,C], ``targets`` 0/1 [B,C]."""
        if scores.shape != targets.shape or scores.shape[-1] != self.num_classes:
            raise ValueError(f"expected scores and targets of shape [B, {self.num_classes}], "
                             f"got {tuple(scores.shape)} and {tuple(targets.shape)}")
        self._scores.append(scores.detach().float().cpu())
        self._targets.append((targets.detach() > 0).float().cpu())

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All scores and 0/1 float targets so far, N×C (concatenated once, then kept)."""
        if not self._scores:
            return torch.zeros(0, self.num_classes), torch.zeros(0, self.num_classes)
        if len(self._scores) > 1:
            self._scores, self._targets = [torch.cat(self._scores)], [torch.cat(self._targets)]
        return self._scores[0], self._targets[0]


class MeanAP(_Accumulator):
    """``mAP`` (mean over labels that have a positive), ``ap_list`` (one per label, None for
    a label without positives), ``num_labels_without_positives``, and the other
    convention's mean too (``mAP_noninterp``, or ``mAP_interp`` when
    ``interpolated: false``)."""

    def __init__(self, num_classes: int, interpolated: bool = True):
        self.interpolated = interpolated
        super().__init__(num_classes)

    def compute(self) -> dict:
        scores, targets = self._all()
        ap = average_precision(scores, targets, self.interpolated)
        other = average_precision(scores, targets, not self.interpolated)
        valid = ~torch.isnan(ap)

        def mean(x: torch.Tensor) -> float:
            return float(x[valid].mean()) if bool(valid.any()) else math.nan

        return {"mAP": mean(ap), "ap_list": [None if math.isnan(v) else float(v) for v in ap.tolist()],
                "num_labels_without_positives": int((~valid).sum()),
                ("mAP_noninterp" if self.interpolated else "mAP_interp"): mean(other)}


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, with 0 where b is 0 (no prediction or no ground truth: nothing to credit)."""
    return torch.where(b > 0, a / b.clamp(min=1), torch.zeros_like(a))


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def prf_from_counts(nc: torch.Tensor, np_: torch.Tensor, ng: torch.Tensor) -> dict:
    """CP, CR, CF1, OP, OR, OF1 from per-class counts (the seed's definitions).

    Per class c: Nc correct, Np predicted, Ng ground truth. CP = mean_c Nc/Np,
    CR = mean_c Nc/Ng, OP = ΣNc/ΣNp, OR = ΣNc/ΣNg, F1s from those; a 0/0 counts as 0.
    """
    nc, np_, ng = nc.double(), np_.double(), ng.double()
    cp = float(_ratio(nc, np_).mean()) if nc.numel() else 0.0
    cr = float(_ratio(nc, ng).mean()) if nc.numel() else 0.0
    op = float(_ratio(nc.sum(), np_.sum()))
    orr = float(_ratio(nc.sum(), ng.sum()))
    return {"cp": cp, "cr": cr, "cf1": _f1(cp, cr), "op": op, "or": orr, "of1": _f1(op, orr)}


def prf(pred: torch.Tensor, targets: torch.Tensor) -> dict:
    """CP, CR, CF1, OP, OR, OF1 of N×C 0/1 predictions against 0/1 targets."""
    pred, targets = (pred > 0).float(), (targets > 0).float()
    return prf_from_counts((pred * targets).sum(0), pred.sum(0), targets.sum(0))


class PrecisionRecallF1(_Accumulator):
    """The seed's CP/CR/CF1/OP/OR/OF1 for the ``topk`` labels of each image
    (``topk_*``) and for probabilities above ``threshold`` (``threshold_*``; ``>`` as
    the seed compares)."""

    def __init__(self, num_classes: int, topk: int = 3, threshold: float = 0.5):
        self.topk, self.threshold = topk, threshold
        super().__init__(num_classes)

    def compute(self) -> dict:
        scores, targets = self._all()
        c = self.num_classes
        ng = targets.sum(0)
        # top-k: count from the k chosen columns of each row only
        idx = scores.topk(min(self.topk, c), dim=1).indices.flatten()
        hit = torch.gather(targets, 1, idx.view(len(scores), -1)).flatten()
        np_top = torch.bincount(idx, minlength=c)
        nc_top = torch.zeros(c).index_add_(0, idx, hit)
        out = {f"topk_{k}": v for k, v in prf_from_counts(nc_top, np_top, ng).items()}
        above = (scores > self.threshold).float()
        out.update({f"threshold_{k}": v
                    for k, v in prf_from_counts((above * targets).sum(0), above.sum(0), ng).items()})
        return out
