"""Pick one decision threshold per class on a labelled split (default ``val``).

``--objective f1`` (the default) takes each class's F1 optimum; ``precision:P`` the
lowest threshold whose precision is at least P (the most recall at that precision);
``recall:R`` the best precision whose recall is at least R. Every distinct score is
tried exactly (no grid); a label is predicted when its score is ``>= threshold``. A
class without a known positive, or whose target no threshold reaches, takes a global
threshold (the same objective over all classes pooled; see :mod:`mlcore.calibration`).

Writes ``thresholds.json`` beside the checkpoint (default: the run's
``checkpoints/best.pt``), naming the checkpoint, its checksum, step and epoch, and
prints the thresholds with precision, recall and F1 at each. Without ``--split`` it
calibrates on ``data.calib_split`` when the config sets one, else on the split ``calib``
when ``data.calib_holdout`` keeps a fraction of the train split aside, else on ``val``.
"""
from __future__ import annotations

import argparse
import os

from .results import write_json

NAME = "calibrate"
HELP = "choose a decision threshold per class on a labelled split; write thresholds.json"
TAKES_CONFIG = True
FILE_NAME = "thresholds.json"
MAX_ROWS = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH", help="weights to calibrate (default: the run's best.pt); "
                   "thresholds.json is written beside it")
    p.add_argument("--split", default=None,
                   help="the labelled split to calibrate on (default: data.calib_split when set, else the "
                        "split 'calib' when data.calib_holdout keeps part of train aside, else val)")
    p.add_argument("--objective", default="f1", metavar="OBJ",
                   help="f1 (default), precision:P (lowest threshold with precision >= P) or recall:R "
                        "(best precision with recall >= R)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..calibration import calibrate, check_targets, parse_objective
    from ..errors import MlcoreError
    from ..checkpoint_config import experiment_for_checkpoint
    from ..weights import _checksum_of

    objective = parse_objective(args.objective)  # a typo fails before anything is built
    # the model and input settings as trained, from the checkpoint (unless --set names them)
    exp, ckpt, _ = experiment_for_checkpoint(args.config, args.overrides, args.checkpoint)
    args.split = args.split or default_split(exp.config.data)
    out = ckpt.parent / FILE_NAME
    ds = exp.split_set(args.split)
    what = f"split {args.split!r} of dataset '{exp.config.dataset.name}'"
    if not hasattr(ds, "targets"):  # a sparse dataset (OpenImages) has no dense matrix to calibrate on
        raise MlcoreError(f"{what} has no dense targets matrix; calibrate needs every image's labels")
    targets = np.asarray(ds.targets)
    if targets.ndim != 2 or targets.shape != (len(ds), len(exp.classes)):
        raise MlcoreError(f"{what}: its targets have shape {targets.shape}, not "
                          f"({len(ds)}, {len(exp.classes)}) (images × classes)")
    check_targets(targets, what)  # before the model runs over the split
    if out.is_dir():
        raise MlcoreError(f"cannot write {str(out)!r}: it is a folder")
    if ckpt.parent.is_dir() and not os.access(ckpt.parent, os.W_OK | os.X_OK):  # before the split is scored
        raise MlcoreError(f"cannot write {str(out)!r}: the checkpoint's folder is not writable")

    checksum = _checksum_of(str(ckpt)) if ckpt.is_file() else None
    held = exp.load_checkpoint(ckpt)  # verified against that checksum while loading
    if ckpt.is_file() and _checksum_of(str(ckpt)) != checksum:
        raise MlcoreError(f"checkpoint {str(ckpt)!r} changed while it was being read; run calibrate again")

    _, scores = exp.evaluate(args.split, return_scores=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun every rank scored its share; rank 0 writes
    scores_np = scores.numpy().astype(np.float32)  # an unreadable image skipped: a NaN row, left out
    cal = calibrate(scores_np, targets, objective)
    classes = list(exp.classes)
    fallback = [c for c, f in zip(classes, cal.fallback) if f]
    prec, rec, f1 = cal.precision, cal.recall, cal.f1
    result = {
        "classes": classes,
        "thresholds": cal.thresholds.tolist(),
        "objective": str(objective),
        "rule": "score >= threshold",
        "split": args.split,
        "num_images": int((~np.isnan(scores_np).any(1)).sum()),
        "checkpoint": str(ckpt),
        "checkpoint_sha256": checksum[1] if checksum else None,
        "step": _int_or_none(held.get("step")),
        "epoch": _int_or_none(held.get("epoch")),
        "fallback_classes": fallback,
        "global_threshold": cal.global_threshold,
        "global_objective": str(cal.global_objective),
        "per_class": {c: {"threshold": float(cal.thresholds[j]), "precision": float(prec[j]),
                          "recall": float(rec[j]), "f1": float(f1[j]), "support": int(cal.support[j])}
                      for j, c in enumerate(classes)},
    }
    write_json(result, out)  # atomic; a failure names the file
    _print_table(classes, cal, prec, rec, f1)
    if fallback:
        print(f"{len(fallback)} class(es) took the global threshold {cal.global_threshold:.4g} "
              f"({cal.global_objective} over all classes pooled): {_few(fallback)}")
    print(f"objective {objective} on split {args.split!r}; wrote {out}")
    return 0


def default_split(data) -> str:
    """The split ``calibrate`` fits on without ``--split``: a held-out one where the
    config offers it (``data.calib_split``, else the ``calib`` part of the train split kept
    aside by ``data.calib_holdout``), else ``val`` — evaluating on the split the thresholds
    were fitted on flatters them."""
    from ..data.holdout import HOLDOUT_SPLIT

    if data.calib_split:
        return data.calib_split
    return HOLDOUT_SPLIT if data.calib_holdout else "val"


def _print_table(classes: list[str], cal, prec, rec, f1) -> None:
    """Up to MAX_ROWS rows, class order; a note says how many more are in the file."""
    shown = classes[:MAX_ROWS]
    width = max(5, *(len(c) for c in shown))
    print(f"  {'class'.ljust(width)}  threshold  precision  recall      f1  support")
    for j, c in enumerate(shown):
        mark = " *" if cal.fallback[j] else ""
        print(f"  {c.ljust(width)}  {cal.thresholds[j]:9.4g}  {_num(prec[j]):>9}  {_num(rec[j]):>6}  "
              f"{_num(f1[j]):>6}  {int(cal.support[j]):7d}{mark}")
    if len(classes) > MAX_ROWS:
        print(f"  … and {len(classes) - MAX_ROWS} more classes (all in thresholds.json)")
    if cal.fallback[:MAX_ROWS].any():
        print("  (* the global threshold)")


def _num(x: float) -> str:
    return "n/a" if x != x else f"{x:.4f}"


def _int_or_none(x) -> int | None:
    try:
        return int(x) if x is not None else None
    except (TypeError, ValueError):
        return None


def _few(names: list[str], n: int = 20) -> str:
    return ", ".join(names[:n]) + (f" … and {len(names) - n} more" if len(names) > n else "")
