"""The numbers behind the figures: precision–recall points, AP, decisions at thresholds
and the false-positive co-occurrence. Targets follow the dataset contract (1 positive,
0 negative, -1 unknown); unknown entries and NaN scores (a skipped image) are left out."""
from __future__ import annotations

import numpy as np


def known(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries that count: a known label and a real score."""
    return (np.asarray(targets) >= 0) & ~np.isnan(np.asarray(scores, dtype=np.float64))


def pr_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of one class at every cut, highest score first (known entries)."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    keep = known(scores, targets)
    scores, targets = scores[keep], targets[keep]
    if len(scores) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(targets[order] > 0)
    rank = np.arange(1, len(order) + 1)
    return tp / max(int(tp[-1]), 1), tp / rank


def average_precision(scores: np.ndarray, targets: np.ndarray, interpolated: bool = True) -> float | None:
    """AP of one class (None without a positive): the area under the precision envelope
    (``interpolated``, the seed's VOC-style AP, what ``evaluate`` reports by default) or
    the step-wise mean of precision at each positive."""
    recall, precision = pr_curve(scores, targets)
    if len(recall) == 0 or recall[-1] == 0:
        return None
    if interpolated:
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * precision).sum())


def class_aps(scores: np.ndarray, targets: np.ndarray) -> list[float | None]:
    return [average_precision(scores[:, j], targets[:, j]) for j in range(scores.shape[1])]


def prf_at(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support when a label is predicted at
    ``score >= threshold`` (NaN where undefined: no prediction, or no positive)."""
    keep = known(scores, targets)
    pred = (np.nan_to_num(scores, nan=-np.inf) >= thresholds[None, :]) & keep
    pos = (targets > 0) & keep
    tp = (pred & pos).sum(0).astype(np.float64)
    pp, npos = pred.sum(0).astype(np.float64), pos.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pp > 0, tp / pp, np.nan)
        recall = np.where(npos > 0, tp / npos, np.nan)
        f1 = np.where(pp + npos > 0, 2 * tp / (pp + npos), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": npos}


def false_positive_cooccurrence(scores: np.ndarray, targets: np.ndarray,
                                thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, positives)``: ``counts[i, j]`` the images where class ``i`` is truly
    present and class ``j`` (a known negative there) is predicted; ``positives[i]`` the
    images of class ``i``. Row ``i`` divided by ``positives[i]`` is the confusion-style
    rate: how often the model sees ``j`` on pictures of ``i``."""
    keep = known(scores, targets)
    pred = (np.nan_to_num(scores, nan=-np.inf) >= thresholds[None, :]) & keep
    pos = ((targets > 0) & keep).astype(np.int64)
    false = (pred & (targets == 0)).astype(np.int64)
    counts = pos.T @ false
    np.fill_diagonal(counts, 0)
    return counts, pos.sum(0)
