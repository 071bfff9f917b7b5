"""The ``map`` and ``prf`` metrics: accumulate probabilities and targets, score at the end.

Both keep the scores of the evaluated samples only (N×C float) and their targets (N×C
int8); ``compute()`` works on them vectorised in torch — ``map`` a block of labels at a
time, so Open Images' validation (41,620 × 9,605) fits in a few GB. Targets are 1 (positive), 0 (negative) or -1
(unknown); an unknown entry is skipped: it counts neither as a positive nor as a
negative, nor as a prediction.

Nothing evaluated (no sample — an empty split, or ``compute()`` before any
``update()`` — or no known target entry at all) is not an error: every mean and rate is
NaN (``null`` in result files), per-label lists are all ``None``, and counts are zero or
cover every label.
"""
from __future__ import annotations

import math

import torch

from .average_precision import average_precisions

#: score entries per block of labels in ``MeanAP.compute`` (its temporaries: a few times this many 8-byte values)
BLOCK_ENTRIES = 1 << 22


class _Accumulator:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``scores`` are probabilities [B,C], ``targets`` [B,C] with 1
        positive, 0 negative and -1 (any negative value) unknown."""
        if scores.shape != targets.shape or scores.ndim != 2 or scores.shape[-1] != self.num_classes:
            raise ValueError(f"expected scores and targets of shape [B, {self.num_classes}], "
                             f"got {tuple(scores.shape)} and {tuple(targets.shape)}")
        t = targets.detach().cpu()
        self._scores.append(scores.detach().float().cpu())
        # 1, 0, -1 as int8: a quarter of float's memory (41,620 × 9,605 Open Images: 0.4 GB, not 1.6)
        self._targets.append((t > 0).to(torch.int8) - (t < 0).to(torch.int8))

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All scores (float) and targets (1, 0, -1 as int8) so far, N×C (concatenated once, then kept)."""
        if not self._scores:
            return torch.zeros(0, self.num_classes), torch.zeros(0, self.num_classes, dtype=torch.int8)
        if len(self._scores) > 1:
            self._scores, self._targets = [torch.cat(self._scores)], [torch.cat(self._targets)]
        return self._scores[0], self._targets[0]

    @staticmethod
    def _known(targets: torch.Tensor) -> torch.Tensor | None:
        """The mask of known entries, or None when every entry is known (the fast path)."""
        unknown = targets < 0
        return ~unknown if bool(unknown.any()) else None


class MeanAP(_Accumulator):
    """``mAP`` (mean over labels that have a positive), ``ap_list`` (one per label, None for
    a label without positives), ``num_labels_without_positives``, and the other
    convention's mean too (``mAP_noninterp``, or ``mAP_interp`` when
    ``interpolated: false``).

    Unknown (-1) entries are left out of their label's ranking. With nothing evaluated
    (no sample, or no known entry) every label is without positives: ``mAP`` and the
    other mean are NaN, ``ap_list`` is all ``None``, ``num_labels_without_positives`` is
    the number of labels.
    """

    def __init__(self, num_classes: int, interpolated: bool = True):
        self.interpolated = interpolated
        super().__init__(num_classes)

    def compute(self) -> dict:
        scores, targets = self._all()
        n, c = scores.shape
        # a block of labels at a time: the temporaries (a few C×N copies, int64 among them) stay
        # bounded at Open Images' 41,620 × 9,605 instead of ~20 GB
        step = max(1, BLOCK_ENTRIES // max(n, 1))
        ap, other = [], []
        for lo in range(0, c, step):
            s, t = scores[:, lo:lo + step], targets[:, lo:lo + step]
            interp, stepwise = average_precisions(s, t, known=self._known(t))
            ap.append(interp if self.interpolated else stepwise)
            other.append(stepwise if self.interpolated else interp)
        ap = torch.cat(ap) if ap else torch.zeros(0, dtype=torch.float64)
        other = torch.cat(other) if other else torch.zeros(0, dtype=torch.float64)
        valid = ~torch.isnan(ap)

        def mean(x: torch.Tensor) -> float:
            return float(x[valid].mean()) if bool(valid.any()) else math.nan

        return {"mAP": mean(ap), "ap_list": [None if math.isnan(v) else float(v) for v in ap.tolist()],
                "num_labels_without_positives": int((~valid).sum()),
                ("mAP_noninterp" if self.interpolated else "mAP_interp"): mean(other)}


def _ratio(a: torch.Tensor, b: torch.Tensor, zero_division: float) -> torch.Tensor:
    """a / b, with ``zero_division`` where b is 0 (then a is 0 too: nothing predicted, or
    nothing to find)."""
    return torch.where(b > 0, a / b.clamp(min=1), torch.full_like(a, float(zero_division)))


def _f1(p: float, r: float) -> float:
    if math.isnan(p) or math.isnan(r):
        return math.nan
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


PRF_KEYS = ("cp", "cr", "cf1", "op", "or", "of1")


def prf_from_counts(nc: torch.Tensor, np_: torch.Tensor, ng: torch.Tensor, zero_division: float = 0) -> dict:
    """CP, CR, CF1, OP, OR, OF1 from per-class counts (the seed's definitions).

    Per class c: Nc correct, Np predicted, Ng ground truth. CP = mean_c Nc/Np,
    CR = mean_c Nc/Ng, OP = ΣNc/ΣNp, OR = ΣNc/ΣNg, CF1 = 2·CP·CR/(CP+CR), OF1 likewise.
    A 0/0 (a class never predicted, a class never present; nothing predicted or nothing
    present at all for OP/OR) counts as ``zero_division`` (0 or 1, scikit-learn's name);
    an F1 of P = R = 0 is 0. Without any class every value is NaN.
    """
    if nc.numel() == 0:
        return dict.fromkeys(PRF_KEYS, math.nan)
    nc, np_, ng = nc.double(), np_.double(), ng.double()
    cp = float(_ratio(nc, np_, zero_division).mean())
    cr = float(_ratio(nc, ng, zero_division).mean())
    op = float(_ratio(nc.sum(), np_.sum(), zero_division))
    orr = float(_ratio(nc.sum(), ng.sum(), zero_division))
    return {"cp": cp, "cr": cr, "cf1": _f1(cp, cr), "op": op, "or": orr, "of1": _f1(op, orr)}


def prf(pred: torch.Tensor, targets: torch.Tensor, zero_division: float = 0) -> dict:
    """CP, CR, CF1, OP, OR, OF1 of N×C 0/1 predictions against targets (1, 0, -1 unknown:
    an unknown entry is neither counted as a prediction nor as ground truth)."""
    known = (targets >= 0).double()
    pred, pos = (pred > 0).double() * known, (targets > 0).double()
    return prf_from_counts((pred * pos).sum(0), pred.sum(0), pos.sum(0), zero_division)


class PrecisionRecallF1(_Accumulator):
    """The seed's CP/CR/CF1/OP/OR/OF1 for the ``topk`` labels of each image
    (``topk_*``) and for probabilities above ``threshold`` (``threshold_*``; ``>`` as
    the seed compares).

    ``zero_division`` (0 or 1) is what a 0/0 counts: the precision of a class never
    predicted, the recall of a class never present (and OP/OR when nothing at all is
    predicted/present). 0 (default) credits nothing; 1 reproduces the seed's CP and CR,
    which clamp every count to machine epsilon before dividing (eps/eps = 1).

    The top-k labels are chosen among all labels; an unknown (-1) entry among them, or
    above the threshold, is then not counted (neither predicted nor ground truth).
    With nothing evaluated (no sample — an empty split, ``compute()`` before
    ``update()`` — or no known target entry) every value is NaN.
    """

    def __init__(self, num_classes: int, topk: int = 3, threshold: float = 0.5, zero_division: float = 0):
        self.topk, self.threshold, self.zero_division = topk, threshold, zero_division
        super().__init__(num_classes)

    def compute(self) -> dict:
        scores, targets = self._all()
        c = self.num_classes
        known = self._known(targets)  # None: all known
        if targets.numel() == 0 or (known is not None and not bool(known.any())):
            return {f"{kind}_{k}": math.nan for kind in ("topk", "threshold") for k in PRF_KEYS}
        known = None if known is None else known.float()
        pos = (targets if known is None else targets.clamp(min=0)).float()  # 0/1 (float sums are the fast ones)
        ng = pos.sum(0)
        # top-k: count from the k chosen columns of each row only
        idx = scores.topk(min(self.topk, c), dim=1).indices
        flat = idx.flatten()
        np_weights = None if known is None else torch.gather(known, 1, idx).flatten()
        np_top = torch.bincount(flat, np_weights, minlength=c)
        nc_top = torch.bincount(flat, torch.gather(pos, 1, idx).flatten(), minlength=c)
        out = {f"topk_{k}": v for k, v in prf_from_counts(nc_top, np_top, ng, self.zero_division).items()}
        above = (scores > self.threshold).float()
        if known is not None:
            above *= known
        out.update({f"threshold_{k}": v for k, v in
                    prf_from_counts((above * pos).sum(0), above.sum(0), ng, self.zero_division).items()})
        return out

    def at_thresholds(self, thresholds) -> dict:
        """``cp`` … ``of1`` of the samples so far at one threshold per class, a label
        predicted when ``score >= thresholds[c]`` (``>=``: the rule of the calibrated
        thresholds ``mlcore calibrate`` writes — each is a score reached exactly), counted
        by :func:`prf` as ``threshold_*`` is, so the two are comparable; unknown entries
        are left out, and with nothing evaluated every value is NaN, as in ``compute()``."""
        scores, targets = self._all()
        thr = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
        if thr.numel() != self.num_classes:
            raise ValueError(f"expected {self.num_classes} thresholds (one per class), got {thr.numel()}")
        if targets.numel() == 0 or not bool((targets >= 0).any()):
            return dict.fromkeys(PRF_KEYS, math.nan)
        return prf(scores.double() >= thr[None, :], targets, self.zero_division)
