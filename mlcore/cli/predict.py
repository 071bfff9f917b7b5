"""Print the top-k labels, with probabilities, of each image given.

Uses the run's ``checkpoints/best.pt`` unless ``--checkpoint`` says otherwise. A file that
is not an image is an error naming it.
"""
from __future__ import annotations

import argparse

NAME = "predict"
HELP = "label images with a trained model"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--topk", type=int, default=3, help="labels shown per image (default 3)")
    p.add_argument("--checkpoint", metavar="PATH", help="weights to use (default: the run's best.pt)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.images import read_image
    from ..experiment import build

    exp = build(args.config, args.overrides)
    tf = exp.eval_transform
    batch = torch.stack([tf(read_image(path)) for path in args.images])  # a bad image fails here, early
    exp.load_checkpoint(args.checkpoint)
    probs = exp.predict(batch)
    k = max(1, min(args.topk, probs.shape[1]))
    values, index = probs.topk(k, dim=1)
    for path, vs, ix in zip(args.images, values.tolist(), index.tolist()):
        labels = " ".join(f"{exp.classes[j]}:{v:.3f}" for v, j in zip(vs, ix))
        print(f"{path}\t{labels}")
    return 0
