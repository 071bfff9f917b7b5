"""Train the model a config describes; ``--resume`` continues from ``checkpoints/last.pt``.

Writes ``output_dir/``: ``config.yaml`` (the resolved config), ``checkpoints/last.pt`` and
``best.pt``, TensorBoard events, and ``result.json`` (the best epoch's validation metrics).
"""
from __future__ import annotations

import argparse

from .results import print_metrics, write_json

NAME = "train"
HELP = "train a model from a config"
TAKES_CONFIG = True


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last.pt")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train on N processes of this machine: runs torchrun --standalone --nproc_per_node N")


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The command that trains the same config on ``args.nproc`` processes of this machine."""
    import sys

    rest = ["train", args.config] + (["--set", *args.overrides] if args.overrides else [])
    rest += ["--resume"] * args.resume + ["--debug"] * args.debug
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
            "-m", "mlcore", *rest]


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from ..config import load_config
    from ..experiment import Experiment

    config = load_config(args.config, args.overrides)  # checked once, before any process is started
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from ..engine.device import select_device
        from ..engine.distributed import check_gpus_for

        check_gpus_for(args.nproc, select_device(config.train.device))
        cmd = torchrun_command(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)  # torchrun takes over this process
    exp = Experiment(config)
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
