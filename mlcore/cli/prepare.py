"""Build a dataset's label index ahead of training and print its summary.

``mlcore prepare coco --root data/coco --set year=2017`` reads the annotation files
once, stores the index in the cache (``$MLCORE_CACHE/index``) and prints the images per
split, labels per image and the rarest classes. Training later starts from the cache.
"""
from __future__ import annotations

import argparse
import time

NAME = "prepare"
HELP = "build and cache a dataset's label index; print its summary"
TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="a dataset plugin name (voc2012, coco, vg500, listfile…)")
    p.add_argument("--root", help="the dataset's folder")
    p.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                   help="other dataset keys, e.g. --set year=2017")


def run(args: argparse.Namespace) -> int:
    from ..cache import cache_dir
    from ..config import parse_set
    from ..data.stats import class_lines, positives_per_class, positives_per_image, split_table
    from ..errors import ConfigError
    from ..factory import create

    params = {}
    for item in args.overrides:
        parts, value = parse_set(item)
        if len(parts) != 1:
            raise ConfigError(f"--set {item!r}: dataset keys are not nested (e.g. --set year=2017)")
        params[parts[0]] = value
    if args.root is not None:
        params["root"] = args.root
    started = time.perf_counter()
    splits, classes, counts = {}, None, None
    for split in filter(None, (s.strip() for s in args.splits.split(","))):
        ds = create("dataset", args.dataset, split=split, **params)
        classes = ds.classes
        splits[split] = positives_per_image(ds)  # no dense N×C matrix (Open Images' train split)
        if counts is None:
            counts = positives_per_class(ds)
    print(f"{args.dataset}: {len(classes)} classes, index ready in {time.perf_counter() - started:.1f} s "
          f"(cache: {cache_dir()})")
    for line in split_table(splits):
        print(line)
    first = next(iter(splits))
    for line in class_lines(classes, counts):
        print(line.replace("classes:", f"classes ({first}):", 1))
    return 0
