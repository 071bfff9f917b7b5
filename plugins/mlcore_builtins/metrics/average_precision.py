"""Average precision per label, vectorised over all labels at once.

Tied scores are one threshold (the result never depends on the order of samples); the
default is the VOC-style interpolated AP the seed reports (area under the precision
envelope), ``interpolated=False`` gives the step-wise AP of scikit-learn's
``average_precision_score``. A label without any positive has no AP (NaN here, ``null``
in results) and is left out of the mean.
"""
from __future__ import annotations

import torch


def average_precision(scores: torch.Tensor, targets: torch.Tensor, interpolated: bool = True) -> torch.Tensor:
    """AP of each column: ``scores``, ``targets`` are N×C; returns C float64 values."""
    scores = scores.double()
    n, c = scores.shape
    if n == 0:
        return torch.full((c,), float("nan"), dtype=torch.float64)
    order = torch.argsort(scores, dim=0, descending=True, stable=True)
    s = torch.gather(scores, 0, order)
    t = torch.gather((targets > 0).double(), 0, order)
    tp = t.cumsum(0)
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device).unsqueeze(1)
    # the last row of each run of equal scores closes a threshold
    end = torch.ones_like(s, dtype=torch.bool)
    end[:-1] = s[1:] != s[:-1]
    precision = torch.where(end, tp / rank, torch.zeros_like(tp))
    # positives gained at each threshold (counts are exact in float64, so the sum below
    # runs over the same numbers in the same places whatever the order within ties)
    tp_at_end = torch.where(end, tp, torch.zeros_like(tp))
    before = torch.cat([torch.zeros_like(tp[:1]), tp_at_end.cummax(0).values[:-1]])
    gained = torch.where(end, tp - before, torch.zeros_like(tp))
    # interpolated: the best precision at this or any later threshold (the envelope)
    value = precision.flip(0).cummax(0).values.flip(0) if interpolated else precision
    npos = t.sum(0)
    ap = (gained * value).sum(0) / npos.clamp(min=1)
    return torch.where(npos > 0, ap, torch.full_like(ap, float("nan")))
