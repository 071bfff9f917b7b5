"""The report's figures, drawn with matplotlib; ``evaluate --plots`` and ``analyze`` use
the same functions, so each picture has one implementation.

Every function returns a :class:`Drawn`: the PNG, its title, and a note saying in words
what the figure leaves out (classes without positives, classes between the top and the
bottom ones at large vocabularies). Rules kept throughout: a title, labelled axes, class
names on the axis (one per row up to ``MAX_NAMED`` classes; beyond, the ``SHOWN_EACH``
highest and lowest with the gap marked), values written on bars, a colour bar wherever
colour encodes a number.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .mpl import png, subplots
from .numbers import pr_curve

MAX_NAMED = 100  # classes drawn one per row up to this many
SHOWN_EACH = 30  # beyond: this many at each end
MAX_GRID = 100  # heatmap rows/columns named one by one
SHOWN_GRID = 50  # beyond: this many, the most active
BAR = "#3b528b"
MUTED = "#888888"


@dataclass(frozen=True)
class Drawn:
    png: bytes
    title: str
    note: str = ""  # what the figure leaves out, said beside it (and in its caption)

    def save(self, path: "str | os.PathLike") -> None:
        from ..files import write_bytes

        write_bytes(path, self.png)


def ends(order: Sequence[int], limit: int = MAX_NAMED, each: int = SHOWN_EACH) -> tuple[list[int], int]:
    """All of ``order`` when it is short, else its first and last ``each`` (and how many
    were skipped between them)."""
    order = list(order)
    if len(order) <= limit:
        return order, 0
    return order[:each] + order[-each:], len(order) - 2 * each


def _hbars(title: str, xlabel: str, names: list[str], values: list[float | None], texts: list[str],
           xmax: float, gap_at: int | None, gap_text: str, ylabel: str = "class"):
    """Horizontal bars, first row on top, a value written at each bar's end; a None value
    is a row with text only (no bar); ``gap_at`` inserts a marked gap before that row."""
    rows = list(zip(names, values, texts))
    if gap_at is not None:
        rows.insert(gap_at, (f"… {gap_text} …", None, ""))
    height = 1.1 + 0.22 * max(len(rows), 1)
    fig, ax = subplots(figsize=(8.5, height))
    y = np.arange(len(rows))
    vals = [v if v is not None else 0.0 for _, v, _ in rows]
    ax.barh(y, vals, color=[BAR if v is not None else "none" for _, v, _ in rows], height=0.7)
    for k, (_, v, text) in enumerate(rows):
        ax.text((v or 0) + xmax * 0.01, k, text, va="center", fontsize=8,
                color="black" if v is not None else MUTED)
    ax.set_yticks(y, [n for n, _, _ in rows], fontsize=8)
    for k, (_, v, _) in enumerate(rows):
        if v is None:
            ax.get_yticklabels()[k].set_color(MUTED)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.15)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def label_frequency(classes: Sequence[str], counts: np.ndarray, split: str = "train",
                    num_images: int | None = None) -> Drawn:
    """Images per class, most frequent first, the count written on each bar."""
    counts = np.asarray(counts, dtype=np.int64)
    order, skipped = ends(np.argsort(-counts, kind="stable"))
    of = f", {num_images} images" if num_images is not None else ""
    title = f"Images per class ({split} split{of})"
    fig = _hbars(title, "images with the label", [classes[j] for j in order],
                 [float(counts[j]) for j in order],
                 [str(int(counts[j])) for j in order], float(max(counts.max(initial=0), 1)),
                 SHOWN_EACH if skipped else None, f"{skipped} classes not shown")
    notes = []
    if skipped:
        notes.append(f"{len(classes)} classes: the {SHOWN_EACH} most and {SHOWN_EACH} least frequent are "
                     f"shown, "
                     f"{skipped} between them are not")
    empty = int((counts == 0).sum())
    if empty:
        notes.append(f"{empty} class(es) have no image in the {split} split (bars of 0)")
    return Drawn(png(fig), title, "; ".join(notes))


def ap_bars(classes: Sequence[str], aps: Sequence[float | None], split: str = "val") -> Drawn:
    """AP per class, best first; classes without positives listed at the bottom as such
    (their AP is undefined, not 0), never dropped."""
    defined = [j for j, a in enumerate(aps) if a is not None]
    missing = [j for j, a in enumerate(aps) if a is None]
    order = sorted(defined, key=lambda j: -float(aps[j]))
    shown, skipped = ends(order)
    mean = float(np.mean([aps[j] for j in defined])) if defined else float("nan")
    title = f"AP per class on the {split} split (mAP {mean:.3f} over {len(defined)} classes)"
    listed_missing = missing if len(missing) <= SHOWN_EACH else missing[:SHOWN_EACH]
    names = [classes[j] for j in shown] + [classes[j] for j in listed_missing]
    values = [float(aps[j]) for j in shown] + [None] * len(listed_missing)
    texts = [f"{float(aps[j]):.3f}" for j in shown] + ["no positives: AP undefined"] * len(listed_missing)
    fig = _hbars(title, "average precision", names, values, texts, 1.0,
                 SHOWN_EACH if skipped else None, f"{skipped} classes not shown")
    notes = []
    if skipped:
        notes.append(f"the {SHOWN_EACH} best and {SHOWN_EACH} worst of {len(defined)} classes are shown, "
                     f"{skipped} between them are not")
    if missing:
        unlisted = len(missing) - len(listed_missing)
        more = f" ({unlisted} of them not listed)" if unlisted else ""
        notes.append(f"{len(missing)} class(es) without positives in the {split} split have no AP and are "
                     f"not in the mAP; listed at the bottom{more}")
    return Drawn(png(fig), title, "; ".join(notes))


def pr_grid(classes: Sequence[str], scores: np.ndarray, targets: np.ndarray, indices: Sequence[int],
            aps: Sequence[float | None], title: str, note: str = "",
            labels: Sequence[str] | None = None) -> Drawn:
    """Precision–recall curves of ``indices``, one panel each with the class, its AP and
    its number of positives in the panel title; the dashed line is the class's base rate
    (the precision of predicting it everywhere)."""
    n = max(len(indices), 1)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(indices):]:
        ax.axis("off")
    for k, (ax, j) in enumerate(zip(axes.flat, indices)):
        t, s = np.asarray(targets[:, j]), np.asarray(scores[:, j])
        recall, precision = pr_curve(s, t)
        npos = int((t > 0).sum())
        base = npos / max(int((t >= 0).sum()), 1)
        first = precision[:1] if len(precision) else np.ones(1)
        ax.step(np.concatenate([[0], recall]), np.concatenate([first, precision]), where="post",
                color="#21918c", lw=1.6)
        ax.axhline(base, ls="--", lw=0.8, color=MUTED)
        ap = aps[j]
        tag = f"{labels[k]}: " if labels is not None and labels[k] else ""  # few classes: no tags
        what = f"AP {ap:.3f}, {npos} positive{'s' if npos != 1 else ''}" if ap is not None else "no positives"
        ax.set_title(f"{tag}{classes[j]}\n{what}", fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return Drawn(png(fig), title, note)


def weakest_and_strongest(aps: Sequence[float | None], each: int = 4) -> tuple[list[int], list[str], str]:
    """The ``each`` lowest-AP and ``each`` highest-AP classes (all, when few), their panel
    tags, and a note of what is left out."""
    defined = sorted((j for j, a in enumerate(aps) if a is not None), key=lambda j: float(aps[j]))
    missing = len(aps) - len(defined)
    if len(defined) <= 2 * each:
        picked, tags = defined, ["" for _ in defined]
        left = ""
    else:
        picked = defined[:each] + defined[-each:]
        tags = ["weakest"] * each + ["strongest"] * each
        left = f"{len(defined) - 2 * each} classes between the weakest and the strongest are not shown"
    if missing:
        left = "; ".join(filter(None, [left, f"{missing} class(es) without positives have no curve"]))
    return picked, tags, left


def training_curves(rows: Sequence[dict], loss: Sequence[tuple[int, float]] = ()) -> Drawn:
    """Loss, learning rate and mAP (and EMA mAP) over optimizer steps: one panel each for
    what the run logged. ``rows`` are metrics.jsonl lines; ``loss`` (step, value) pairs
    read from elsewhere (TensorBoard events) when the lines hold none."""
    steps = np.array([r.get("step", k) for k, r in enumerate(rows)], dtype=np.float64)

    def series(key: str) -> np.ndarray | None:
        vals = [r.get(key) for r in rows]
        if all(v is None for v in vals):
            return None
        return np.array([np.nan if v is None else float(v) for v in vals])

    panels = []
    loss_keys = sorted({k for r in rows for k, v in r.items()
                        if "loss" in k.lower() and isinstance(v, (int, float))})
    curves = [(k, steps, series(k)) for k in loss_keys]
    if loss:
        curves.append(("train loss (TensorBoard)", np.array([s for s, _ in loss], float),
                       np.array([v for _, v in loss], float)))
    if curves:
        panels.append(("Loss", "loss", curves))
    if series("lr") is not None:
        panels.append(("Learning rate", "learning rate", [("lr", steps, series("lr"))]))
    maps = [(k, steps, series(k)) for k in ("mAP", "ema_mAP") if series(k) is not None]
    if maps:
        panels.append(("Validation mAP", "mAP", maps))
    title = f"Training curves ({len(rows)} validations)"
    fig, axes = subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.3), squeeze=False)
    for ax, (name, ylabel, lines) in zip(axes.flat, panels):
        for label, x, y in lines:
            ax.plot(x, y, marker="o" if len(x) <= 30 else None, ms=3, lw=1.5, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ylabel == "learning rate" and np.nanmax(lines[0][2]) > 0 and np.nanmin(lines[0][2]) > 0 \
                and np.nanmax(lines[0][2]) / np.nanmin(lines[0][2]) > 50:
            ax.set_yscale("log")
        if len(lines) > 1 or ylabel == "loss":
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    note = "" if curves else "no loss was logged: metrics.jsonl holds validation metrics only"
    return Drawn(png(fig), title, note)


def heatmap(classes: Sequence[str], matrix: np.ndarray, keep: Sequence[int], title: str, xlabel: str,
            ylabel: str, colorbar: str, note: str = "", vmax: float | None = None) -> Drawn:
    """``matrix`` restricted to the ``keep`` rows and columns, named on both axes, with a
    colour bar; cells are written in when the grid is small enough to read them."""
    keep = list(keep)
    m = np.asarray(matrix, dtype=np.float64)[np.ix_(keep, keep)]
    n = len(keep)
    side = min(max(4.5, 0.2 * n + 2.5), 18)
    fig, ax = subplots(figsize=(side + 1.3, side))
    top = vmax if vmax is not None else max(float(m.max(initial=0)), 1e-9)
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=top, interpolation="nearest", aspect="equal")
    names = [classes[j] for j in keep]
    fs = 8 if n <= 40 else 7 if n <= 80 else 6
    ax.set_xticks(range(n), names, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), names, fontsize=fs)
    if n <= 15:
        top = float(m.max(initial=0)) or 1.0
        for i in range(n):
            for j in range(n):
                if m[i, j] > 0:
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] < 0.6 * top else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(colorbar)
    return Drawn(png(fig), title, note)


def most_active(matrix: np.ndarray, limit: int = SHOWN_GRID) -> tuple[list[int], str]:
    """All classes up to ``MAX_GRID``; else the ``limit`` with the largest row + column sums."""
    c = matrix.shape[0]
    if c <= MAX_GRID:
        return list(range(c)), ""
    weight = np.asarray(matrix).sum(0) + np.asarray(matrix).sum(1)
    keep = sorted(np.argsort(-weight, kind="stable")[:limit].tolist())
    return keep, f"{c} classes: the {limit} with the most mass in this matrix are shown, {c - limit} are not"


def cooccurrence(classes: Sequence[str], counts: np.ndarray, cooc: np.ndarray, split: str = "train") -> Drawn:
    """P(column label | row label) = co-occurrence / row count: what a graph model such as
    SSGRL propagates along. The diagonal (always 1) is left blank."""
    counts = np.asarray(counts, dtype=np.float64)
    cond = np.asarray(cooc, dtype=np.float64) / np.maximum(counts[:, None], 1)
    np.fill_diagonal(cond, 0)
    keep, note = most_active(cond)
    empty = int((counts == 0).sum())
    if empty:
        note = "; ".join(filter(None, [note, f"{empty} class(es) without images have empty rows"]))
    return heatmap(classes, cond, keep, f"Label co-occurrence ({split} split): P(column | row)",
                   "co-occurring label", "given label", "P(column label | row label)", note, vmax=1.0)


def false_positives(classes: Sequence[str], counts: np.ndarray, positives: np.ndarray, at: str,
                    split: str = "val") -> Drawn:
    """Rows: the true class; columns: the class falsely predicted on its images; colour:
    the fraction of the row class's images on which that happens."""
    per_row = np.maximum(np.asarray(positives, dtype=np.float64)[:, None], 1)
    rate = np.asarray(counts, dtype=np.float64) / per_row
    keep, note = most_active(np.asarray(counts, dtype=np.float64))
    none = [classes[j] for j in range(len(classes)) if positives[j] == 0]
    if none:
        note = "; ".join(filter(None, [note, f"{len(none)} class(es) without positives have empty rows: "
                                             + ", ".join(none[:10]) + (" …" if len(none) > 10 else "")]))
    return heatmap(classes, rate, keep, f"False positives by true class ({split} split, {at})",
                   "falsely predicted class", "true class of the image",
                   "fraction of the row class's images", note)


def threshold_gain(classes: Sequence[str], f1_half: np.ndarray, f1_cal: np.ndarray, split: str) -> Drawn:
    """Per-class F1 at the fixed 0.5 threshold and at the calibrated one (classes ordered
    by the gain); a class whose F1 is undefined (no positive, no prediction) is left out
    and counted in the note."""
    ok = [j for j in range(len(classes)) if np.isfinite(f1_cal[j]) or np.isfinite(f1_half[j])]
    a, b = np.nan_to_num(f1_half), np.nan_to_num(f1_cal)
    order, skipped = ends(sorted(ok, key=lambda j: -(b[j] - a[j])))
    title = f"F1 per class on the {split} split: threshold 0.5 vs calibrated"
    fig, ax = subplots(figsize=(8.5, 1.1 + 0.22 * max(len(order), 1)))
    y = np.arange(len(order))
    ax.hlines(y, [a[j] for j in order], [b[j] for j in order], color="#cccccc", lw=2)
    ax.scatter([a[j] for j in order], y, color=MUTED, label="0.5", zorder=3, s=18)
    ax.scatter([b[j] for j in order], y, color=BAR, label="calibrated", zorder=3, s=18)
    ax.set_yticks(y, [classes[j] for j in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("F1")
    ax.set_ylabel("class")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    notes = []
    if skipped:
        notes.append(f"the {SHOWN_EACH} largest and {SHOWN_EACH} smallest gains are shown, {skipped} are not")
    if len(ok) < len(classes):
        notes.append(f"{len(classes) - len(ok)} class(es) with undefined F1 (no positive and no prediction) "
                     f"are not shown")
    return Drawn(png(fig), title, "; ".join(notes))
