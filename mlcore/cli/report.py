"""Write one self-contained HTML page explaining a run folder: its config and
environment, the dataset's label statistics, the training curves, AP per class (sortable),
precision–recall curves of the weakest and strongest classes, the calibrated thresholds
and what they give, and which classes are falsely predicted on which.

It reads what ``train``, ``evaluate`` and ``calibrate`` wrote into RUN_DIR and runs no
model; a missing piece is named in its section with the command that makes it.
Needs matplotlib (``pip install 'mlcore[report]'``).
"""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "write an HTML report of a run folder (figures embedded)"
TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the output_dir of `mlcore train`)")
    p.add_argument("--out", metavar="FILE", help="where to write the page (default: RUN_DIR/report.html)")
    p.add_argument("--split", default="val", help="the evaluated split to report (default: val)")


def run(args: argparse.Namespace) -> int:
    from ..run_report import write_report
    from ..run_report.mpl import require

    require()  # a missing matplotlib fails before the run folder is read
    path = write_report(args.run_dir, args.out, args.split)
    print(f"wrote {path}")
    return 0
