"""Evaluation pictures for ``mlcore evaluate --plots``: per-class AP bars and
precision–recall curves, drawn by the same functions as ``mlcore report``
(:mod:`mlcore.run_report.figures`)."""
from __future__ import annotations

import numpy as np

from ..run_report.numbers import class_aps, pr_curve

__all__ = ["ap_bars", "pr_curve", "pr_curves"]


def ap_bars(classes: list[str], aps: list, path: str) -> None:
    """Per-class AP, best first; classes without positives listed at the bottom as such."""
    from ..run_report.figures import ap_bars as draw

    draw(classes, aps).save(path)


def pr_curves(classes: list[str], scores: np.ndarray, targets: np.ndarray, path: str,
              limit: int = 20) -> None:
    """Precision–recall curves, AP in each panel title: every class with a positive when
    there are at most ``limit``, else the ``limit // 2`` weakest and strongest."""
    from ..run_report.figures import pr_grid, weakest_and_strongest

    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    aps = class_aps(scores, targets)
    picked, tags, note = weakest_and_strongest(aps, each=max(1, limit // 2))
    title = ("Precision–recall, weakest and strongest classes" if any(tags)
             else "Precision–recall per class")
    pr_grid(classes, scores, targets, picked, aps, title, note, tags).save(path)
