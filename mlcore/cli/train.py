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
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes of this machine: runs torchrun --standalone --nproc_per_node N")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = sys.argv[1:]
        i = argv.index("--nproc")
        rest = argv[:i] + argv[i + 2:]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "mlcore", *rest]
        os.execv(sys.executable, cmd)  # torchrun takes over this process
    from ..experiment import build

    exp = build(args.config, args.overrides)
    summary = exp.fit(resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    out = exp.config.output_dir
    metrics = {k: v for k, v in summary.items() if k not in ("best_score", "monitor", "reason")}
    if "mAP" in metrics:
        write_json(metrics, f"{out}/result.json")
    print(f"training {summary['reason']}; best epoch {summary['best_epoch']} "
          f"({summary['monitor']} {summary['best_score']})")
    print_metrics(metrics, exp.classes)
    print(f"run folder: {out}")
    return 0
