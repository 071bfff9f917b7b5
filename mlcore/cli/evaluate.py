"""Evaluate a trained model on the validation split (or ``--split``).

Writes to ``--out``; by default to the run's ``output_dir/eval/`` when the run's own
``best.pt`` is evaluated (no ``--checkpoint``), and with ``--checkpoint X`` to
``eval-<X's stem>/`` beside X (``checkpoints/last.pt`` → ``checkpoints/eval-last/``): the
run's ``eval/`` describes its best checkpoint (``mlcore report`` reads it), and scoring
another file must not replace it. Files: ``result.json`` (the seed's keys:
``mAP``, ``ap_list``, ``topk_cp`` … ``threshold_of1``, plus ``classes``, ``num_images``,
``split`` and ``checkpoint``), ``scores.npy`` (N×C probabilities in dataset order) and
``predictions.tsv`` (``image<TAB>label,label,…``: the top-k labels, the seed's list
format). ``result.json`` also maps each class to its AP (``ap``) and, when the checkpoint
holds an EMA of the weights, repeats every key for it with the prefix ``ema_``.
``--plots`` adds ``ap_per_class.png`` and ``pr_curves.png``. Without ``--checkpoint`` it
uses the run's ``checkpoints/best.pt``.

Calibrated thresholds: when ``thresholds.json`` (written by ``mlcore calibrate``) lies
beside the checkpoint, or ``--thresholds PATH`` names one, ``result.json`` also holds
``calibrated_cp`` … ``calibrated_of1`` — the ``threshold_*`` figures with each class
decided by ``score >= threshold[c]`` instead of the fixed 0.5, counted by the same
``prf`` metric code (unknown targets left out) — and ``thresholds: {path, objective,
split}``. The file must be for the checkpoint's classes (a file for other classes is an
error) and, when both checksums are known, for this very checkpoint: a file named with
``--thresholds`` for another checkpoint is an error; one merely found beside it (e.g.
calibrated for ``best.pt`` while ``last.pt`` is evaluated) is left unused, with a note.
Thresholds fitted on the evaluated split score that split optimistically:
``result.json`` then says ``calibrated_on_evaluated_split: true`` and the printout warns
and names the honest way (``data.calib_split`` or ``data.calib_holdout``).
``--thresholds none`` leaves calibrated thresholds out. The EMA weights
(``ema_*``) are not scored with thresholds calibrated for the raw weights.
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

from .results import print_metrics, write_file, write_json

NAME = "evaluate"
HELP = "evaluate a checkpoint; write result.json, scores.npy, predictions.tsv"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH", help="weights to evaluate (default: the run's best.pt)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: output_dir/eval; with --checkpoint X: eval-<X stem>/ beside X, "
                        "so the run's eval/ is kept)")
    p.add_argument("--split", default="val", help="which split to evaluate (default: val)")
    p.add_argument("--topk", type=int, default=3, help="labels per image in predictions.tsv (default 3)")
    p.add_argument("--plots", action="store_true", help="also write ap_per_class.png and pr_curves.png")
    p.add_argument("--thresholds", metavar="PATH",
                   help="calibrated thresholds for the calibrated_* metrics (default: thresholds.json "
                        "beside the checkpoint, when there is one; 'none': leave them out)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..checkpoint_config import experiment_for_checkpoint
    from ..errors import MlcoreError

    # the model and input settings as trained, from the checkpoint (unless --set names them)
    exp, path, contents = experiment_for_checkpoint(args.config, args.overrides, args.checkpoint)
    out = default_out(args.out, str(path) if args.checkpoint else None, exp.config.output_dir)
    if out.exists() and not out.is_dir():
        raise MlcoreError(f"--out {str(out)!r} is a file, not a folder")
    ckpt = str(path)
    held = exp.load_checkpoint(ckpt, contents=contents)  # read once
    thresholds = _thresholds_for(args.thresholds, ckpt, held, exp)  # a wrong file fails before scoring
    metrics, scores = exp.evaluate(args.split, return_scores=True)
    ds = exp.split_set(args.split)
    result = {**metrics, "ap": dict(zip(exp.classes, metrics.get("ap_list") or []))}
    if "ema" in held:  # the moving average of the weights, evaluated beside them
        exp.load_state(held["ema"], ckpt)
        ema_metrics = exp.evaluate(args.split)
        result.update({f"ema_{k}": v for k, v in ema_metrics.items()})
        result["ema_ap"] = dict(zip(exp.classes, ema_metrics.get("ap_list") or []))
    result.update({"classes": exp.classes, "num_images": len(ds), "split": args.split, "checkpoint": ckpt})
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun every rank scored its share; rank 0 writes
    scores_np = scores.numpy().astype(np.float32)
    calibrated = None
    if thresholds is not None:
        calibrated = _calibrated(exp, ds, scores_np, thresholds, args.split)
        if calibrated is not None:
            result.update(calibrated)
    buf = io.BytesIO()
    np.save(buf, scores_np)
    lines = []
    k = max(1, min(args.topk, scores_np.shape[1]))
    top = np.argsort(-scores_np, axis=1, kind="stable")[:, :k]
    names = getattr(ds, "images", None)
    for path, idx in zip(names if names is not None else map(str, range(len(ds))), top):
        lines.append(f"{path}\t{','.join(exp.classes[j] for j in idx)}")
    write_file(buf.getvalue(), out / "scores.npy")
    write_file("\n".join(lines) + "\n", out / "predictions.tsv")
    write_json(result, out / "result.json")
    written = ["result.json", "scores.npy", "predictions.tsv"]
    if args.plots:
        from .plots import ap_bars, pr_curves

        ap_bars(exp.classes, metrics.get("ap_list") or [], str(out / "ap_per_class.png"))
        written.append("ap_per_class.png")
        if hasattr(ds, "targets"):  # a sparse dataset (OpenImages) has no dense matrix to plot from
            pr_curves(exp.classes, scores_np, np.asarray(ds.targets), str(out / "pr_curves.png"))
            written.append("pr_curves.png")
    print_metrics(metrics, exp.classes)
    if calibrated is not None:
        _print_calibrated(result, thresholds, args.split)
    if "ema_mAP" in result:
        print(f"EMA of the weights: mAP {result['ema_mAP']:.4f}")
    print(f"wrote {out}/{', '.join(written)}")
    return 0


def default_out(out: str | None, checkpoint: str | None, output_dir: str) -> Path:
    """Where evaluate writes: ``--out``; else beside a ``--checkpoint`` X as ``eval-<X stem>/``
    (the run's ``eval/`` stays the best checkpoint's); else ``output_dir/eval``."""
    if out:
        return Path(out)
    if checkpoint:
        x = Path(checkpoint)
        return x.parent / f"eval-{x.stem}"
    return Path(output_dir) / "eval"


CALIBRATED_KEYS = tuple(f"calibrated_{k}" for k in ("cp", "cr", "cf1", "op", "or", "of1"))


def _thresholds_for(option: str | None, ckpt: str, held: dict, exp) -> Any:
    """The calibrated thresholds to score with (a :class:`~mlcore.thresholds_file.Thresholds`
    in the model's class order), or None: ``--thresholds none``, or no file beside the
    checkpoint, or one beside it that was calibrated for another checkpoint (noted)."""
    from ..errors import MlcoreError
    from ..thresholds_file import path_beside, read_thresholds
    from ..weights import _checksum_of

    if option is not None and option.strip().lower() == "none":
        return None
    named = option is not None
    path = Path(option) if named else path_beside(ckpt)
    if not named and not path.is_file():
        return None
    classes = list(exp.classes)  # the model's output order (a checkpoint in another order was reordered into it)
    checksum = _checksum_of(ckpt) if Path(ckpt).is_file() else None
    sha = checksum[1] if checksum else None
    thr = read_thresholds(path, classes=classes)  # classes checked (and reordered) whichever way it came
    if sha is not None and thr.checkpoint_sha256 is not None and thr.checkpoint_sha256 != sha:
        if named:  # asked for by name: refuse, with read_thresholds' message
            return read_thresholds(path, classes=classes, checkpoint_sha256=sha)
        # found beside it: best.pt and last.pt share a folder, and its thresholds are best.pt's
        print(f"note: {str(path)!r} was calibrated for another checkpoint ({thr.checkpoint!r}); "
              f"no calibrated_* metrics for {ckpt!r} (`mlcore calibrate --checkpoint {ckpt}` calibrates it; "
              f"--thresholds none silences this)")
        return None
    if len(thr.classes) != len(exp.classes):
        raise MlcoreError(f"thresholds file {str(path)!r} has {len(thr.classes)} classes, the evaluated "
                          f"model {len(exp.classes)}")
    return thr


def _same_split(a: str, b: str, exp) -> bool:
    """Whether two split names are one split (``val`` is ``data.val_split``)."""
    val = exp.config.data.val_split

    def canon(s: str) -> str:
        return val if s == "val" else s

    return canon(a) == canon(b)


def _calibrated(exp, ds, scores, thr, split: str) -> dict | None:
    """The ``calibrated_*`` keys and the ``thresholds`` record for ``result.json``: the
    scores decided per class by ``score >= thr``, counted by the ``prf`` metric of the
    config (its ``zero_division``), or a default ``prf`` when the config has none. Rows of
    unreadable images (NaN scores) are left out, as the metrics leave them out. None (with
    a note) for a dataset without a dense targets matrix."""
    import numpy as np
    import torch

    from ..factory import create

    if not hasattr(ds, "targets"):
        print(f"note: split {split!r} has no dense targets matrix; no calibrated_* metrics")
        return None
    counter = next((m for m in exp.metrics if callable(getattr(m, "at_thresholds", None))), None)
    if counter is None:
        counter = create("metric", "prf", num_classes=len(exp.classes))
    keep = ~np.isnan(scores).any(1)
    targets = np.asarray(ds.targets)
    counter.update(torch.from_numpy(scores[keep]), torch.from_numpy(targets[keep].astype(np.int8)))
    values = counter.at_thresholds(torch.from_numpy(np.asarray(thr.thresholds, np.float64)))
    out: dict = {f"calibrated_{k}": float(v) for k, v in values.items()}
    out["thresholds"] = {"path": thr.path, "objective": thr.objective, "split": thr.split}
    out["calibrated_on_evaluated_split"] = _same_split(thr.split, split, exp)
    return out


def _print_calibrated(result: dict, thr, split: str) -> None:
    """The calibrated figures in a small table under the fixed-threshold ones, and the
    warning when the thresholds were fitted on the evaluated split."""
    def fmt(v: Any) -> str:
        return "n/a" if v is None or v != v else f"{float(v):.4f}"

    names = ("cp", "cr", "cf1", "op", "or", "of1")
    print(f"calibrated thresholds: {thr.path} ({thr.objective} on split {thr.split!r})")
    print("              " + "  ".join(n.rjust(6) for n in names))
    for label, prefix in (("fixed", "threshold_"), ("calibrated", "calibrated_")):
        if any(prefix + n in result for n in names):
            print(f"  {label.ljust(10)}  " + "  ".join(fmt(result.get(prefix + n)).rjust(6) for n in names))
    if result.get("calibrated_on_evaluated_split"):
        print(f"warning: the calibrated figures are optimistic: the thresholds were fitted on split "
              f"{split!r}, the split evaluated. For honest figures calibrate on a held-out split - "
              f"data.calib_split (a labelled split of the dataset, e.g. val) or data.calib_holdout (a "
              f"fraction of train kept aside as split 'calib') - and evaluate on another split "
              f"(e.g. --split test).")
