"""Average precision over the known entries only, straight from the sparse labels.

On Open Images a class's AP ranks only the images where that class is known (verified
positive or negative): unknown entries are left out, as mlcore's ``map`` metric does
with -1 targets. The ``map`` metric works on dense N×C tensors (validation: 41,620 ×
9,605, several C×N temporaries); here only the known entries (~1% of N×C) are gathered
from the scores and sorted once, so the extra memory is a few arrays of that length.

Definitions match ``mlcore_builtins.metrics.average_precision``: tied scores are one
threshold; ``interpolated`` gives the VOC-style precision envelope, else the step-wise AP.
"""
from __future__ import annotations

import numpy as np


def average_precision_known(scores, offsets: np.ndarray, labels: np.ndarray, positive: np.ndarray,
                            num_classes: int, interpolated: bool = True) -> np.ndarray:
    """AP of each class (float64, NaN for a class without a known positive) from N×C
    ``scores`` (numpy or torch) and the CSR labels (``offsets``, ``labels``, ``positive``
    of :class:`~mlcore_builtins.openimages.reader.SparseIndex`)."""
    scores = scores.numpy() if hasattr(scores, "numpy") else np.asarray(scores)
    n = len(offsets) - 1
    image = np.repeat(np.arange(n), np.diff(np.asarray(offsets)))
    cls = np.asarray(labels).astype(np.int64)
    pos = np.asarray(positive, dtype=bool)
    s = scores[image, cls].astype(np.float64)
    del image
    order = np.lexsort((-s, cls))  # by class, then score descending
    cls, s, pos = cls[order], s[order], pos[order]
    del order
    m = len(cls)
    out = np.full(num_classes, np.nan)
    if not m:
        return out
    # cumulative counts within each class; a tie group is read at its last element
    class_start = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    seg = np.repeat(class_start, np.diff(np.r_[class_start, m]))
    tp_all = np.cumsum(pos)
    base_tp = np.where(seg > 0, tp_all[seg - 1], 0)
    tp = tp_all - base_tp
    seen = np.arange(m) - seg + 1
    group_end = np.r_[(cls[1:] != cls[:-1]) | (s[1:] != s[:-1]), True]
    end_of_group = np.flatnonzero(group_end)
    last = end_of_group[np.searchsorted(end_of_group, np.arange(m))]  # each entry's tie group end
    precision = tp[last] / seen[last]
    if interpolated:  # max precision at this or any lower threshold, within the class
        seg_index = np.cumsum(np.r_[False, cls[1:] != cls[:-1]])
        # a lift that grows from the last class to the first keeps the reversed running
        # maximum from carrying over from one class into the next (precision is in [0, 1])
        lift = (seg_index[-1] - seg_index).astype(np.float64) * 2.0
        precision = np.maximum.accumulate((precision + lift)[::-1])[::-1] - lift
    npos = np.bincount(cls, weights=pos, minlength=num_classes)
    total = np.bincount(cls, weights=np.where(pos, precision, 0.0), minlength=num_classes)
    has = npos > 0
    out[has] = total[has] / npos[has]
    return out
