"""Label statistics of a dataset's splits, as text (the pictures are the report's
figures: :mod:`mlcore.run_report.figures`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def positives_per_image(ds) -> np.ndarray:
    """How many positive labels each image of a split has. A dataset too large for a dense
    N×C ``targets`` matrix (Open Images' train split: 9M × 9,605) gives its own
    ``positives_per_image()``; otherwise its ``targets`` are counted a block of rows at a
    time (unknown entries, -1, are not positives)."""
    own = getattr(ds, "positives_per_image", None)
    if callable(own):
        return np.asarray(own(), dtype=np.int64)
    t = ds.targets
    rows = max(1, (1 << 24) // max(len(ds.classes), 1))
    return np.concatenate([(np.asarray(t[i:i + rows]) > 0).sum(1) for i in range(0, len(t), rows)]
                          or [np.zeros(0, np.int64)])


def positives_per_class(ds) -> np.ndarray:
    """How many images carry each label (``label_info()``'s counts where the dataset gives
    one, else its dense ``targets`` counted)."""
    info = getattr(ds, "label_info", None)
    if callable(info):
        return np.asarray(info().counts, dtype=np.int64)
    return (np.asarray(ds.targets) > 0).sum(0)


def split_table(splits: Mapping[str, np.ndarray]) -> list[str]:
    """One line per split — images, labels per image, images without a label — from each
    split's positives per image (:func:`positives_per_image`)."""
    lines = [f"  {'split':<10} {'images':>8} {'labels/image':>13} {'no label':>9}"]
    for name, per in splits.items():
        per = np.asarray(per)
        lines.append(f"  {name:<10} {len(per):>8} {per.mean() if len(per) else 0:>13.2f} {int((per == 0).sum()):>9}")
    return lines


def class_lines(classes: Sequence[str], counts: np.ndarray, n: int = 5) -> list[str]:
    order = np.argsort(counts, kind="stable")
    rare = ", ".join(f"{classes[j]} {int(counts[j])}" for j in order[:n])
    common = ", ".join(f"{classes[j]} {int(counts[j])}" for j in order[::-1][:n])
    return [f"  rarest classes: {rare}", f"  most frequent:  {common}"]


def top_pairs(classes: Sequence[str], cooccurrence: np.ndarray, n: int = 5) -> str:
    c = np.triu(np.asarray(cooccurrence, dtype=np.int64), 1)
    flat = np.argsort(c, axis=None, kind="stable")[::-1][:n]
    pairs = [np.unravel_index(k, c.shape) for k in flat if c.flat[k] > 0]
    return ", ".join(f"{classes[i]}+{classes[j]} {int(c[i, j])}" for i, j in pairs) or "none"
