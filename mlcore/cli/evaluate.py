"""Evaluate a trained model on the validation split (or ``--split``).

Writes to ``--out`` (default ``output_dir/eval/``): ``result.json`` (the seed's keys:
``mAP``, ``ap_list``, ``topk_cp`` … ``threshold_of1``, plus ``classes``, ``num_images``,
``split`` and ``checkpoint``), ``scores.npy`` (N×C probabilities in dataset order) and
``predictions.tsv`` (``image<TAB>label,label,…``: the top-k labels, the seed's list
format). ``result.json`` also maps each class to its AP (``ap``) and, when the checkpoint
holds an EMA of the weights, repeats every key for it with the prefix ``ema_``.
``--plots`` adds ``ap_per_class.png`` and ``pr_curves.png``. Without ``--checkpoint`` it
uses the run's ``checkpoints/best.pt``.
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from .results import print_metrics, write_file, write_json

NAME = "evaluate"
HELP = "evaluate a checkpoint; write result.json, scores.npy, predictions.tsv"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH", help="weights to evaluate (default: the run's best.pt)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: output_dir/eval)")
    p.add_argument("--split", default="val", help="which split to evaluate (default: val)")
    p.add_argument("--topk", type=int, default=3, help="labels per image in predictions.tsv (default 3)")
    p.add_argument("--plots", action="store_true", help="also write ap_per_class.png and pr_curves.png")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import MlcoreError
    from ..experiment import build

    exp = build(args.config, args.overrides)
    out = Path(args.out) if args.out else Path(exp.config.output_dir) / "eval"
    if out.exists() and not out.is_dir():
        raise MlcoreError(f"--out {str(out)!r} is a file, not a folder")
    ckpt = args.checkpoint or str(exp.checkpoint_path())
    held = exp.load_checkpoint(ckpt)
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
    if "ema_mAP" in result:
        print(f"EMA of the weights: mAP {result['ema_mAP']:.4f}")
    print(f"wrote {out}/{', '.join(written)}")
    return 0
