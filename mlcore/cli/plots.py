"""Evaluation pictures, drawn with Pillow: per-class AP bars and precision–recall curves."""
from __future__ import annotations

import math

import numpy as np


def _canvas(w: int, h: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), "white")
    return img, ImageDraw.Draw(img)


def ap_bars(classes: list[str], aps: list, path: str) -> None:
    """Per-class AP, best first (labels without positives left out)."""
    rows = sorted(((a, c) for c, a in zip(classes, aps) if a is not None), reverse=True)
    line = 14
    img, d = _canvas(620, 30 + line * max(len(rows), 1))
    d.text((10, 8), f"AP per class ({len(rows)} classes)", fill="black")
    for i, (a, c) in enumerate(rows):
        y = 26 + i * line
        d.text((10, y), c[:24], fill="black")
        d.rectangle([180, y + 2, 180 + 380 * a, y + line - 3], fill=(59, 82, 139))
        d.text((565, y), f"{a:.3f}", fill="black")
    img.save(path)


def pr_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every threshold of one label (highest score first)."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(targets[order] > 0)
    rank = np.arange(1, len(order) + 1)
    return tp / max(tp[-1], 1), tp / rank


def pr_curves(classes: list[str], scores: np.ndarray, targets: np.ndarray, path: str, limit: int = 20) -> None:
    """A grid of precision–recall curves, one per class (the first ``limit`` classes)."""
    n = min(len(classes), limit)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    cell = 160
    img, d = _canvas(cols * cell, rows * cell)
    for k in range(n):
        x0, y0 = (k % cols) * cell, (k // cols) * cell
        d.rectangle([x0 + 20, y0 + 20, x0 + cell - 10, y0 + cell - 20], outline="grey")
        d.text((x0 + 22, y0 + 4), classes[k][:22], fill="black")
        if not (targets[:, k] > 0).any():
            continue
        r, p = pr_curve(scores[:, k], targets[:, k])
        w, h = cell - 30, cell - 40
        pts = [(x0 + 20 + w * ri, y0 + cell - 20 - h * pi) for ri, pi in zip(r[:: max(1, len(r) // 400)],
                                                                            p[:: max(1, len(p) // 400)])]
        if len(pts) > 1:
            d.line(pts, fill=(33, 145, 140), width=2)
    img.save(path)
