"""Label statistics of a dataset's splits, as text and as pictures (drawn with Pillow, so
no plotting library is needed)."""
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


_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def _colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to RGB along a viridis-like ramp."""
    pos = np.clip(x, 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def frequency_plot(classes: Sequence[str], counts: np.ndarray, path: str) -> None:
    """Bars of images per class, most frequent first (class names when they fit)."""
    from PIL import Image, ImageDraw

    c = len(classes)
    bar = max(2, min(24, 1600 // max(c, 1)))
    w, h, top, bottom = 60 + bar * c + 20, 420, 30, 120 if bar >= 10 else 30
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    order = np.argsort(-np.asarray(counts), kind="stable")
    peak = max(int(np.max(counts)) if c else 1, 1)
    d.text((60, 8), f"images per class (train split), max {peak}", fill="black")
    d.line([(58, top), (58, h - bottom)], fill="black")
    for k, j in enumerate(order):
        x = 60 + k * bar
        y = h - bottom - (h - bottom - top) * counts[j] / peak
        d.rectangle([x, y, x + bar - 2, h - bottom], fill=(59, 82, 139))
        if bar >= 10:
            label = classes[j][:16]
            tmp = Image.new("RGB", (100, 12), "white")
            ImageDraw.Draw(tmp).text((0, 0), label, fill="black")
            img.paste(tmp.rotate(90, expand=True), (x, h - bottom + 4))
    img.save(path)


def cooccurrence_plot(classes: Sequence[str], counts: np.ndarray, cooccurrence: np.ndarray, path: str) -> None:
    """Heatmap of P(column label | row label) = co-occurrence / row count, the matrix a
    graph model such as SSGRL propagates along."""
    from PIL import Image

    counts = np.asarray(counts, dtype=np.float64)
    cond = np.asarray(cooccurrence, dtype=np.float64) / np.maximum(counts[:, None], 1)
    np.fill_diagonal(cond, 0)
    cell = max(1, min(24, 800 // max(len(classes), 1)))
    img = Image.fromarray(_colormap(cond)).resize((len(classes) * cell, len(classes) * cell), Image.NEAREST)
    img.save(path)
