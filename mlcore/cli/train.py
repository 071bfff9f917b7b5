"""Train the model a config describes; ``--resume`` continues from ``checkpoints/last.pt``.

Writes ``output_dir/``: ``config.yaml`` (the resolved config), ``checkpoints/last.pt`` and
``best.pt``, TensorBoard events, and ``result.json`` (the best epoch's validation metrics).
The console shows the best epoch's headline metrics (``ema_mAP`` too with ``train.ema``)
rounded to 4 decimals; ``result.json`` keeps them whole.

A folder that already holds a run is refused (exit 2) unless ``--resume`` continues it or
``--overwrite`` removes its run files and starts clean; a config without ``output_dir``
trains into a new ``runs/<config name>/version_<n>`` each time. ``--resume`` checks the
config against the run's ``config.yaml``: epochs, logging, checkpoint frequency, workers,
``data.on_bad_image`` and hook sections may change (and are listed); anything else is
refused unless ``--force``. ``mlcore train RUN/config.yaml --resume`` always resumes as the
run was started.
"""
from __future__ import annotations

import argparse

from .argtypes import positive_int
from .results import print_metrics

NAME = "train"
HELP = "train a model from a config"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from checkpoints/last.pt, exactly; the config may "
                        "change only epochs, logging, checkpoint frequency, workers, data.on_bad_image and "
                        "hook sections")
    p.add_argument("--overwrite", action="store_true",
                   help="output_dir holds a run: remove its run files (config, metrics, checkpoints, events, "
                        "eval, result.json; nothing else) and start clean")
    p.add_argument("--force", action="store_true",
                   help="with --resume: accept config changes that break exactness (batch size, data, "
                        "model, optimizer, seed, ...)")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train on N processes of this machine: runs torchrun --standalone --nproc_per_node N")


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The command that trains the same config on ``args.nproc`` processes of this machine."""
    import sys

    rest = ["train", args.config] + (["--set", *args.overrides] if args.overrides else [])
    rest += ["--resume"] * args.resume + ["--overwrite"] * args.overwrite + ["--force"] * args.force
    rest += ["--debug"] * args.debug
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
    world = int(os.environ.get("WORLD_SIZE", "1"))  # under torchrun (--nproc execs it): resume on as many
    flags = ["--nproc", str(world)] if world > 1 else []
    summary = exp.fit(resume=args.resume, overwrite=args.overwrite, force=args.force, cli_flags=flags)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    out = exp.config.output_dir  # result.json is written by fit itself
    metrics = {k: v for k, v in summary.items() if k not in ("best_score", "monitor", "reason")}
    best = summary["best_score"]  # rounded as every printed number; result.json keeps it whole
    print(f"training {summary['reason']}; best epoch {summary['best_epoch']} "
          f"({summary['monitor']} {'n/a' if best is None else f'{float(best):.4f}'})")
    print_metrics(metrics, exp.classes)
    print(f"run folder: {out}")
    return 0
