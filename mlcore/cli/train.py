"""Train the model a config describes; ``--resume`` continues from ``checkpoints/last.pt``.

Writes ``output_dir/``: ``config.yaml`` (the resolved config), ``checkpoints/last.pt`` and
``best.pt``, TensorBoard events, and ``result.json`` (the best epoch's validation metrics).
"""
from __future__ import annotations

import argparse

from .report import print_metrics, write_json

NAME = "train"
HELP = "train a model from a config"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last.pt")


def run(args: argparse.Namespace) -> int:
    from ..experiment import build

    exp = build(args.config, args.overrides)
    summary = exp.fit(resume=args.resume)
    out = exp.config.output_dir
    metrics = {k: v for k, v in summary.items() if k not in ("best_score", "monitor", "reason")}
    if "mAP" in metrics:
        write_json(metrics, f"{out}/result.json")
    print(f"training {summary['reason']}; best epoch {summary['best_epoch']} "
          f"({summary['monitor']} {summary['best_score']})")
    print_metrics(metrics, exp.classes)
    print(f"run folder: {out}")
    return 0
