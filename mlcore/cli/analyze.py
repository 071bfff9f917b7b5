"""Label statistics of a config's dataset: the summary, a label-frequency plot and a
co-occurrence heatmap (PNG files in ``output_dir/analysis/`` or ``--out``), drawn with
matplotlib by the figures of ``mlcore report`` (:mod:`mlcore.run_report.figures`).

Counts and co-occurrence come from the train split only — what models receive as
LabelInfo (the seed built its graph from train + val, which leaks validation labels).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "analyze"
HELP = "label statistics and plots of a config's dataset"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="where to write the PNG files (default: output_dir/analysis)")


def run(args: argparse.Namespace) -> int:
    from ..data.stats import class_lines, positives_per_image, split_table, top_pairs
    from ..errors import MlcoreError
    from ..experiment import build
    from ..run_report.figures import cooccurrence, label_frequency
    from ..run_report.mpl import require

    require()  # a missing matplotlib fails before the dataset is read
    exp = build(args.config, args.overrides)
    info = exp.label_info
    out = Path(args.out) if args.out else Path(exp.config.output_dir) / "analysis"
    try:
        out.mkdir(parents=True, exist_ok=True)
        split = exp.config.data.train_split
        label_frequency(info.classes, info.counts, split, int(info.num_images)).save(
            out / "label_frequency.png")
        cooccurrence(info.classes, info.counts, info.cooccurrence, split).save(out / "cooccurrence.png")
    except OSError as exc:
        raise MlcoreError(f"cannot write to {str(out)!r}: {exc.strerror or exc}") from exc
    d = exp.config.data
    print(f"{exp.config.dataset.name}: {len(info.classes)} classes")
    splits = {d.train_split: positives_per_image(exp.train_set), d.val_split: positives_per_image(exp.val_set)}
    for line in split_table(splits):
        print(line)
    for line in class_lines(info.classes, info.counts):
        print(line)
    print(f"  most frequent pairs: {top_pairs(info.classes, info.cooccurrence)}")
    print(f"wrote {out}/label_frequency.png, cooccurrence.png")
    return 0
