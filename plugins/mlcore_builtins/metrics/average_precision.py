"""Average precision per label, vectorised over all labels at once.

Tied scores are one threshold (the result never depends on the order of samples); the
default is the VOC-style interpolated AP the seed reports (area under the precision
envelope), ``interpolated=False`` gives the step-wise AP of scikit-learn's
``average_precision_score``. A label without any positive has no AP (NaN here, ``null``
in results) and is left out of the mean.

Only thresholds at positive scores matter (precision peaks where a positive enters, and
recall only moves there), so nothing is sorted but each label's positives: every score
is placed among its label's sorted positive scores with one ``searchsorted``, and a
histogram of those places gives, for each positive's threshold, how many samples score
at or above it. That avoids sorting all N×C scores.
"""
from __future__ import annotations

import torch


def average_precision(scores: torch.Tensor, targets: torch.Tensor, interpolated: bool = True,
                      known: torch.Tensor | None = None) -> torch.Tensor:
    """AP of each column: ``scores``, ``targets`` are N×C; returns C float64 values (NaN
    for a column without a positive, and so for every column when N is 0).

    ``known`` (N×C bool) leaves out the entries where it is False (unknown labels): they
    are ranked below every positive, where they change no precision.
    """
    return average_precisions(scores, targets, known)[0 if interpolated else 1]


def average_precisions(scores: torch.Tensor, targets: torch.Tensor,
                       known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(interpolated AP, step-wise AP)`` of each column, from one ranking (the two
    differ only in the last step)."""
    n, c = scores.shape
    pos = (targets > 0).t()
    if known is not None:
        pos = pos & known.t()
        scores = scores.float().masked_fill(~known, float("-inf"))
    npos = pos.sum(1)
    pmax = int(npos.max()) if n else 0
    if pmax == 0:
        nan = torch.full((c,), float("nan"), dtype=torch.float64)
        return nan, nan.clone()
    s = scores.t().float().contiguous()  # C×N, one label per row
    # each label's positive scores, ascending, right-aligned in a row padded with -inf
    label, sample = pos.nonzero(as_tuple=True)
    offset = torch.cumsum(npos, 0) - npos
    slot = torch.arange(len(label)) - offset[label] + (pmax - npos[label])
    thresholds = torch.full((c, pmax), float("-inf"))
    thresholds[label, slot] = s[label, sample]
    thresholds = torch.sort(thresholds, dim=1).values
    # place[i] = how many thresholds (pads included) are <= score i
    place = torch.searchsorted(thresholds, s, right=True)
    counts = torch.zeros(c, pmax + 1, dtype=torch.int64).scatter_add_(1, place, torch.ones_like(place))
    own = torch.searchsorted(thresholds, thresholds, right=True)  # the positives' own places
    counts.scatter_add_(1, own, torch.full_like(own, -1))
    counts[:, 0] = 0  # pads and everything below the lowest positive
    at_or_above = counts.flip(1).cumsum(1).flip(1)  # [k]: negatives placed at k or above
    first = torch.searchsorted(thresholds, thresholds, right=False)  # first of each tied value
    pos_ge = (pmax - first).double()  # positives scoring >= this threshold
    neg_ge = torch.gather(at_or_above, 1, first + 1).double()
    precision = pos_ge / (pos_ge + neg_ge)
    real = torch.arange(pmax)[None, :] >= (pmax - npos)[:, None]
    precision = torch.where(real, precision, torch.zeros_like(precision))
    nan = torch.full((c,), float("nan"), dtype=torch.float64)

    def mean_over_positives(p: torch.Tensor) -> torch.Tensor:
        ap = torch.where(real, p, torch.zeros_like(p)).sum(1) / npos.clamp(min=1)
        return torch.where(npos > 0, ap, nan)

    step = mean_over_positives(precision)
    # interpolated: the best precision at this or any lower threshold (higher recall)
    return mean_over_positives(precision.cummax(1).values), step
