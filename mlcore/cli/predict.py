"""Label images with a trained model: the top-k labels with their probabilities.

IMAGE may be a file, a folder (its images, sorted) or a glob pattern (``'photos/*.jpg'``).
In a folder or a glob, files that are not images are skipped with a warning; a file named
on the command line that is not an image is an error. ``--threshold T`` also lists every
label above T, ``--threshold calibrated`` every label at or above its own class's threshold
(``thresholds.json`` beside the checkpoint, written by ``mlcore calibrate``; in an exported
model, its metadata); ``--json`` prints one JSON object per image. Images go through the
model in batches. Uses the run's ``checkpoints/best.pt`` unless ``--checkpoint`` says
otherwise.

CONFIG may instead be a model exported with ``mlcore export --format onnx`` (a ``.onnx``
file): it runs with onnxruntime on the CPU, its classes, sizes and thresholds come from
its metadata, and images are resized and cropped as the evaluation transform does — the
same labels and probabilities as with the config and checkpoint, without either.
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
CALIBRATED = "calibrated"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--topk", type=int, default=3, help="labels shown per image (default 3)")
    p.add_argument("--threshold", type=_threshold, metavar="T|calibrated",
                   help="also show every label with a probability above T, or, with 'calibrated', at or "
                        "above its class's calibrated threshold (run `mlcore calibrate` first)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint", metavar="PATH", help="weights to use (default: the run's best.pt)")


def _threshold(text: str) -> float | str:
    """A probability, or ``calibrated``; anything else is argparse's usage error (exit 2)."""
    if text == CALIBRATED:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or {CALIBRATED!r}, got {text!r}") from None


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
    if str(args.config).lower().endswith(".onnx"):
        return _run_onnx(args)
    from ..checkpoint_config import experiment_for_checkpoint

    # the classes, model and input size as trained, from the checkpoint: no dataset is read
    exp, path, _ = experiment_for_checkpoint(args.config, args.overrides, args.checkpoint, need_data=False)
    paths, batch = _images(args.images, exp.eval_transform)
    exp.load_checkpoint(path)
    thresholds = _calibrated_beside(exp, str(path)) if args.threshold == CALIBRATED else None
    probs = exp.predict(batch, batch_size=args.batch_size)
    _print(args, paths, exp.classes, probs, thresholds)
    return 0


def _run_onnx(args: argparse.Namespace) -> int:
    """``predict model.onnx IMAGE…``: everything from the exported file (see the docstring)."""
    from ..errors import MlcoreError
    from ..export import OnnxModel

    for given, flag in ((args.checkpoint, "--checkpoint"), (args.overrides, "--set")):
        if given:
            raise MlcoreError(f"{flag} does not apply to an exported model ({args.config!r} holds its "
                              f"weights and settings)")
    model = OnnxModel(args.config)
    thresholds = model.thresholds() if args.threshold == CALIBRATED else None
    paths, batch = _images(args.images, model.eval_transform)
    _print(args, paths, model.classes, model.predict(batch, batch_size=args.batch_size), thresholds)
    return 0


def _calibrated_beside(exp, checkpoint: str | None):
    """The per-class thresholds in ``thresholds.json`` beside the checkpoint in use, checked
    against its classes and checksum (a missing file says to run ``mlcore calibrate``)."""
    from pathlib import Path

    from ..thresholds_file import path_beside, read_thresholds
    from ..weights import _checksum_of

    ckpt = Path(checkpoint) if checkpoint else exp.checkpoint_path()
    checksum = _checksum_of(str(ckpt))
    return read_thresholds(path_beside(ckpt), classes=list(exp.classes),
                           checkpoint_sha256=checksum[1] if checksum else None).thresholds


def _images(items: list[str], tf):
    """The images' paths and their uint8 batch after ``tf``; a bad named image fails here,
    before any model is loaded."""
    import torch

    from ..data.images import BadImageError, read_image
    from ..errors import MlcoreError

    paths, tensors = [], []
    for path, named in expand(items):
        if not named and os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
            warnings.warn(f"skipping {path!r}: not an image file", stacklevel=1)
            continue
        try:
            tensors.append(tf(read_image(path)))
        except BadImageError:
            if named:
                raise
            warnings.warn(f"skipping {path!r}: cannot be decoded", stacklevel=1)
            continue
        paths.append(path)
    if not paths:
        raise MlcoreError("no image to label")
    return paths, torch.stack(tensors)


def _print(args: argparse.Namespace, paths: list[str], classes: list[str], probs, thresholds) -> None:
    """The top-k per image and, with ``--threshold``, the labels above it: ``> T`` for a
    number (as before), ``>=`` its class's threshold for ``calibrated`` (calibrate's rule)."""
    import torch

    k = max(1, min(args.topk, probs.shape[1]))
    values, index = probs.topk(k, dim=1)
    if thresholds is not None:
        chosen = probs >= torch.as_tensor(thresholds, dtype=probs.dtype)[None, :]
    elif args.threshold is not None:
        chosen = probs > args.threshold
    else:
        chosen = None
    rule = ">=calibrated" if thresholds is not None else f">{args.threshold:g}" if chosen is not None else ""
    for i, path in enumerate(paths):
        top = [(classes[j], v) for v, j in zip(values[i].tolist(), index[i].tolist())]
        above = ([(classes[j], float(probs[i, j])) for j in torch.nonzero(chosen[i]).flatten().tolist()]
                 if chosen is not None else None)
        if args.json:
            row = {"image": path, "topk": [{"label": c, "probability": round(v, 6)} for c, v in top]}
            if above is not None:
                row["above_threshold"] = [{"label": c, "probability": round(v, 6)}
                                          for c, v in sorted(above, key=lambda x: -x[1])]
            print(json.dumps(row))
        else:
            line = f"{path}\t" + " ".join(f"{c}:{v:.3f}" for c, v in top)
            if above is not None:
                line += f"\t{rule}: " + (",".join(c for c, _ in above) or "-")
            print(line)
