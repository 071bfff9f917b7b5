"""Label images with a trained model: the top-k labels with their probabilities.

IMAGE may be a file, a folder (its images, sorted) or a glob pattern (``'photos/*.jpg'``).
In a folder or a glob, files that are not images are skipped with a warning; a file named
on the command line that is not an image is an error. ``--threshold T`` also lists every
label above T; ``--json`` prints one JSON object per image. Images go through the model in
batches. Uses the run's ``checkpoints/best.pt`` unless ``--checkpoint`` says otherwise.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import warnings

NAME = "predict"
HELP = "label images with a trained model"
TAKES_CONFIG = True
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--topk", type=int, default=3, help="labels shown per image (default 3)")
    p.add_argument("--threshold", type=float, help="also show every label with a probability above this")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint", metavar="PATH", help="weights to use (default: the run's best.pt)")


def expand(items: list[str]) -> list[tuple[str, bool]]:
    """``(path, named)`` for every image: named files as given, folders and globs expanded."""
    from ..errors import MlcoreError

    out = []
    for item in items:
        if os.path.isdir(item):
            out += [(os.path.join(item, f), False) for f in sorted(os.listdir(item))
                    if os.path.isfile(os.path.join(item, f))]
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            matches = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not matches:
                raise MlcoreError(f"no file matches {item!r}")
            out += [(p, False) for p in matches]
        else:
            out.append((item, True))
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.images import BadImageError, read_image
    from ..experiment import build

    exp = build(args.config, args.overrides)
    tf = exp.eval_transform
    paths, tensors = [], []
    for path, named in expand(args.images):
        if not named and os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
            warnings.warn(f"skipping {path!r}: not an image file", stacklevel=1)
            continue
        try:
            tensors.append(tf(read_image(path)))  # a bad named image fails here, before the model loads
        except BadImageError:
            if named:
                raise
            warnings.warn(f"skipping {path!r}: cannot be decoded", stacklevel=1)
            continue
        paths.append(path)
    if not paths:
        from ..errors import MlcoreError

        raise MlcoreError("no image to label")
    exp.load_checkpoint(args.checkpoint)
    probs = exp.predict(torch.stack(tensors), batch_size=args.batch_size)
    k = max(1, min(args.topk, probs.shape[1]))
    values, index = probs.topk(k, dim=1)
    for i, path in enumerate(paths):
        top = [(exp.classes[j], v) for v, j in zip(values[i].tolist(), index[i].tolist())]
        above = ([(exp.classes[j], float(probs[i, j])) for j in torch.nonzero(probs[i] > args.threshold).flatten()]
                 if args.threshold is not None else None)
        if args.json:
            row = {"image": path, "topk": [{"label": c, "probability": round(v, 6)} for c, v in top]}
            if above is not None:
                row["above_threshold"] = [{"label": c, "probability": round(v, 6)}
                                          for c, v in sorted(above, key=lambda x: -x[1])]
            print(json.dumps(row))
        else:
            line = f"{path}\t" + " ".join(f"{c}:{v:.3f}" for c, v in top)
            if above is not None:
                line += "\t>" + f"{args.threshold:g}: " + (",".join(c for c, _ in above) or "-")
            print(line)
    return 0
