"""Average precision per label, vectorised over all labels at once.

Tied scores are one threshold (the result never depends on the order of samples); the
default is the VOC-style interpolated AP the seed reports (area under the precision
envelope), ``interpolated=False`` gives the step-wise AP of scikit-learn's
``average_precision_score``. A label without any positive has no AP (NaN here, ``null``
in results) and is left out of the mean.

Labels are rows (C×N, contiguous) so every sort and scan runs along memory; counts are
integers, so sums do not depend on the order of samples within a tie.
"""
from __future__ import annotations

import torch


def average_precision(scores: torch.Tensor, targets: torch.Tensor, interpolated: bool = True) -> torch.Tensor:
    """AP of each column: ``scores``, ``targets`` are N×C; returns C float64 values."""
    n, c = scores.shape
    if n == 0:
        return torch.full((c,), float("nan"), dtype=torch.float64)
    s, order = torch.sort(scores.t().contiguous(), dim=1, descending=True)
    t = torch.gather((targets > 0).t().to(torch.int32), 1, order)
    tp = t.cumsum(1, dtype=torch.int32)
    # the last sample of each run of equal scores closes a threshold
    end = torch.ones_like(s, dtype=torch.bool)
    end[:, :-1] = s[:, 1:] != s[:, :-1]
    zero = torch.zeros((), dtype=torch.int32)
    tp_end = torch.where(end, tp, zero)
    # positives gained at each threshold: tp there minus tp at the previous threshold
    before = torch.nn.functional.pad(tp_end.cummax(1).values[:, :-1], (1, 0))
    gained = torch.where(end, tp - before, zero)
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    precision = torch.where(end, tp / rank, torch.zeros((), dtype=torch.float64))
    # interpolated: the best precision at this or any later threshold (the envelope)
    value = precision.flip(1).cummax(1).values.flip(1) if interpolated else precision
    npos = tp[:, -1].to(torch.float64)
    ap = (gained * value).sum(1) / npos.clamp(min=1)
    return torch.where(npos > 0, ap, torch.full_like(ap, float("nan")))
