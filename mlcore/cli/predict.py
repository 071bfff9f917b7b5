"""Label images with a trained model: the top-k labels with their probabilities.

IMAGE may be a file, a folder (its images, sorted) or a glob pattern (``'photos/*.jpg'``).
In a folder or a glob, files that are not images are skipped with a warning; a file named
on the command line that is not an image is an error. ``--threshold T`` also lists every
label above T, ``--threshold calibrated`` every label at or above its own class's threshold
(``thresholds.json`` beside the checkpoint, written by ``mlcore calibrate``; in an exported
model, its metadata); ``--json`` prints one JSON object per image. Images go through the
model in batches. Uses the run's ``checkpoints/best.pt`` unless ``--checkpoint`` says
otherwise.

Weights: when the checkpoint holds an exponential moving average of the weights
(``train.ema``), predict uses it — it is what training kept as the smoother model — and
says so on stderr; ``--weights raw`` takes the raw weights. ``--threshold calibrated``
uses the raw weights unless ``--weights ema`` (then an error): ``mlcore calibrate`` fits
the thresholds to the raw weights' scores, and thresholds fitted to one model do not
hold for another.

The calibrated rule: a label is chosen when ``score >= threshold[c] - 1e-6``
(:data:`CALIBRATED_SLACK`). Calibrated thresholds are exact scores observed on the
calibration split, and onnxruntime and PyTorch differ by ~1e-7 on exactly the images that
set them; without the slack the two runtimes would disagree on those images. The same
rule applies to a config and to an exported ``.onnx`` model.

``--topk`` must be >= 1 and ``--threshold`` a probability in [0, 1] (else argparse's usage
error, exit 2).

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

from .argtypes import positive_int

NAME = "predict"
HELP = "label images with a trained model"
TAKES_CONFIG = True
CALIBRATED = "calibrated"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
#: a score this far below its class's calibrated threshold still reaches it (see the docstring)
CALIBRATED_SLACK = 1e-6


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--topk", type=positive_int, default=3, help="labels shown per image (default 3; >= 1)")
    p.add_argument("--threshold", type=_threshold, metavar="T|calibrated",
                   help="also show every label with a probability above T, or, with 'calibrated', at or "
                        "above its class's calibrated threshold (run `mlcore calibrate` first)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--checkpoint", metavar="PATH", help="weights to use (default: the run's best.pt)")
    p.add_argument("--weights", choices=("ema", "raw"),
                   help="which weights of the checkpoint: its EMA (the default when it has one, except with "
                        "--threshold calibrated) or the raw ones")


def _threshold(text: str) -> float | str:
    """A probability, or ``calibrated``; anything else is argparse's usage error (exit 2)."""
    if text == CALIBRATED:
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or {CALIBRATED!r}, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1] or {CALIBRATED!r}, got {text!r}")
    return value


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
    exp, path, contents = experiment_for_checkpoint(args.config, args.overrides, args.checkpoint, need_data=False)
    paths, batch = _images(args.images, exp.eval_transform)
    held = exp.load_checkpoint(path, contents=contents)  # read once
    _choose_weights(exp, held, str(path), args)
    thresholds = _calibrated_beside(exp, str(path)) if args.threshold == CALIBRATED else None
    probs = exp.predict(batch, batch_size=args.batch_size)
    _print(args, paths, exp.classes, probs, thresholds)
    return 0


def _choose_weights(exp, held: dict, path: str, args: argparse.Namespace) -> None:
    """Load the checkpoint's EMA weights when it has them and they are wanted (see the
    docstring), saying on stderr which weights are used."""
    import sys

    from ..errors import MlcoreError

    calibrated = args.threshold == CALIBRATED
    if "ema" not in held:
        if args.weights == "ema":
            raise MlcoreError(f"--weights ema: checkpoint {path!r} holds no EMA of the weights (train.ema was off)")
        return
    if args.weights == "ema" and calibrated:
        raise MlcoreError("--weights ema with --threshold calibrated: the calibrated thresholds were fitted to the "
                          "raw weights' scores; use --weights raw (the default with --threshold calibrated)")
    if args.weights == "raw" or (args.weights is None and calibrated):
        if args.weights is None:
            print(f"mlcore: using the raw weights of {path} (not its EMA): the calibrated thresholds were "
                  f"fitted to them", file=sys.stderr)
        return
    exp.load_state(held["ema"], path)
    print(f"mlcore: using the EMA weights of {path} (--weights raw for the raw ones)", file=sys.stderr)


def _run_onnx(args: argparse.Namespace) -> int:
    """``predict model.onnx IMAGE…``: everything from the exported file (see the docstring)."""
    from ..errors import MlcoreError
    from ..export import OnnxModel

    for given, flag in ((args.checkpoint, "--checkpoint"), (args.overrides, "--set"), (args.weights, "--weights")):
        if given:
            raise MlcoreError(f"{flag} does not apply to an exported model ({args.config!r} holds its "
                              f"weights and settings)")
    model = OnnxModel(args.config)
    if model.metadata.get("weights") == "ema":
        import sys

        print(f"mlcore: {args.config} holds the EMA weights of its checkpoint", file=sys.stderr)
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
    number (as before), ``>=`` its class's threshold for ``calibrated`` (calibrate's rule,
    with :data:`CALIBRATED_SLACK` so that both runtimes agree)."""
    import torch

    k = max(1, min(args.topk, probs.shape[1]))
    values, index = probs.topk(k, dim=1)
    if thresholds is not None:
        limit = torch.as_tensor(thresholds, dtype=torch.float64)[None, :] - CALIBRATED_SLACK
        chosen = probs.double() >= limit
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
