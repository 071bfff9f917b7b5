"""Label statistics of a dataset's splits, as text (the pictures are the report's
figures: :mod:`mlcore.run_report.figures`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def split_table(splits: Mapping[str, np.ndarray]) -> list[str]:
    """One line per split: images, labels per image, images without a label."""
    lines = [f"  {'split':<10} {'images':>8} {'labels/image':>13} {'no label':>9}"]
    for name, t in splits.items():
        t = np.asarray(t)
        per = t.sum(1)
        lines.append(f"  {name:<10} {len(t):>8} {per.mean() if len(t) else 0:>13.2f} {int((per == 0).sum()):>9}")
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
