"""Schemas of the core's own config sections: ``data``, ``train``, and the framework's
keys of ``optimizer`` and ``scheduler``.

Plugin sections (``dataset``, ``model``, ``loss``, ``metrics``, ``optimizer``,
``scheduler``, hook sections) are checked against their plugins' schemas. ``validate()`` methods return ``(key, message)``
pairs for the range checks a type annotation cannot express.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
#: sanity bounds: beyond them a value is a typo, not a setting (a 10⁹-pixel side, a
#: million data-loading processes, a collective timeout that overflows a timedelta)
MAX_SIDE = 16384
MAX_WORKERS = 256
MAX_TIMEOUT = 1e7


def _positive(obj, *names: str) -> list[tuple[str, str]]:
    return [(n, f"must be > 0, got {getattr(obj, n)!r}") for n in names
            if getattr(obj, n) is not None and getattr(obj, n) <= 0]


def _non_negative(obj, *names: str) -> list[tuple[str, str]]:
    return [(n, f"must be >= 0, got {getattr(obj, n)!r}") for n in names
            if getattr(obj, n) is not None and getattr(obj, n) < 0]


@dataclass
class DataSection:
    """The input pipeline.

    Training images are resized to ``scale_size``², cropped at a random place with a size
    drawn from ``train_crops`` (the seed's multi-scale crop; default: ``crop_size`` only),
    resized to ``crop_size``² and flipped at random (``hflip``) — or, with
    ``random_resized_crop: [min, max]``, cropped as torchvision's RandomResizedCrop does
    (that fraction of the image's area, aspect 3/4–4/3; CSRA's and ASL's crop) and resized
    to ``crop_size``²; ``randaugment`` (torchvision's
    defaults) and ``cutout`` (a square of that fraction of the side, as in ASL) are
    options. Evaluation resizes to ``scale_size``² and takes the centre ``crop_size``²
    crop. ``mean``/``std`` normalize on the device. ``on_bad_image``: ``warn`` replaces an
    undecodable training image by another one and names it, and an undecodable evaluation
    image is an error; ``skip`` does the same in training and leaves such images out of
    evaluation (saying how many); ``error`` stops in both. ``unknown_labels``: what
    training does with the labels a dataset marks unknown (-1: partial labels, e.g.
    ``voc2007`` with ``difficult: ignore``): ``ignore`` leaves them out of the loss (the
    mean is over known entries), ``negative`` trains them as negatives (the common
    baseline of the partial-label literature). Metrics always skip them.

    Honest calibration (``mlcore calibrate``): ``calib_split`` names a labelled split of
    the dataset to fit thresholds on (e.g. ``val`` while ``evaluate --split test``
    judges them); ``calibrate`` takes it by default. ``calib_holdout: F`` (a fraction in
    (0, 0.5]; null or 0: off) keeps that fraction of the train split aside — drawn by
    ``train.seed``, the same in every run and on every rank, never trained on — as the
    split ``calib``, which ``calibrate`` then takes by default (unless ``calib_split``
    says otherwise).
    """

    train_split: str = "train"
    val_split: str = "val"
    scale_size: int = 512
    crop_size: int = 448
    train_crops: list[int] | None = None
    random_resized_crop: list[float] | None = None
    hflip: bool = True
    randaugment: bool = False
    cutout: float = 0.0
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    on_bad_image: Literal["warn", "skip", "error"] = "warn"
    unknown_labels: Literal["ignore", "negative"] = "ignore"
    calib_split: str | None = None
    calib_holdout: float | None = None

    def validate(self):
        out = _positive(self, "scale_size", "crop_size")
        if self.calib_holdout is not None and self.calib_holdout != 0 and not 0 < self.calib_holdout <= 0.5:
            out.append(("calib_holdout", f"must be a fraction of the train split in (0, 0.5] "
                                         f"(null or 0: off), got {self.calib_holdout!r}"))
        if self.calib_split is not None and self.calib_split in ("", self.train_split):
            out.append(("calib_split", f"must name a labelled split other than the train split "
                                       f"({self.train_split!r}): thresholds fitted on training images are "
                                       f"not honest; got {self.calib_split!r}"))
        if self.scale_size > MAX_SIDE:
            out.append(("scale_size", f"must be <= {MAX_SIDE} pixels, got {self.scale_size}"))
        if not 0 <= self.cutout < 1:
            out.append(("cutout", f"must be a fraction in [0, 1), got {self.cutout}"))
        if self.crop_size > self.scale_size:
            out.append(("crop_size", f"must be <= scale_size ({self.scale_size}), got {self.crop_size}"))
        for c in self.train_crops or []:
            if not 0 < c <= self.scale_size:
                out.append(("train_crops", f"each crop must be in 1..scale_size ({self.scale_size}), got {c}"))
        rrc = self.random_resized_crop
        if rrc is not None and not (len(rrc) == 2 and 0 < rrc[0] <= rrc[1] <= 1):
            out.append(("random_resized_crop", f"must be [min, max] area fractions with 0 < min <= max <= 1, "
                                               f"got {rrc!r}"))
        elif rrc is not None and self.train_crops:
            out.append(("random_resized_crop", "replaces train_crops: give one or the other"))
        for key in ("mean", "std"):
            if len(getattr(self, key)) != 3:
                out.append((key, f"must hold 3 numbers (R, G, B), got {getattr(self, key)!r}"))
        if any(s <= 0 for s in self.std):
            out.append(("std", f"must be > 0, got {self.std!r}"))
        return out


@dataclass
class TrainSection:
    """The training loop.

    ``checkpoint_every`` is in optimizer steps (0: only at epoch ends). ``device``:
    ``auto`` takes CUDA when present, else the CPU. ``log_every`` is in steps.
    ``accumulate``: batches whose gradients add up before one optimizer step.
    ``ema``: the decay of an exponential moving average of the weights (e.g. 0.9997;
    null: off), updated after every optimizer step and evaluated alongside the model —
    its metrics are reported with the prefix ``ema_``.
    Speed: ``amp`` (``bf16``, ``fp16`` with a gradient scaler — CUDA only — or ``off``),
    ``channels_last``, ``compile`` (torch.compile, falling back with a warning). On CUDA,
    cuDNN picks its fastest algorithms (``cudnn.benchmark``) unless ``deterministic``,
    which makes GPU runs repeatable (and resumes exact) at some cost in speed; CPU runs
    are repeatable either way.
    ``monitor`` (a validation metric, e.g. ``mAP``, ``ema_mAP``, ``threshold_cf1``, with
    ``mode`` ``max`` or ``min``) decides which epoch is best: ``checkpoints/best.pt``
    and ``result.json``.
    Under torchrun: ``batch_size`` is per process; ``sync_bn`` converts BatchNorm to
    SyncBatchNorm; ``dist_timeout`` (seconds) bounds every collective, so a dead rank
    makes the others fail instead of hanging.
    """

    epochs: int = 20
    batch_size: int = 16
    num_workers: int = 2
    seed: int = 0
    checkpoint_every: int = 0
    device: str = "auto"
    log_every: int = 20
    grad_clip: float | None = None
    eval_batch_size: int | None = None
    accumulate: int = 1
    ema: float | None = None
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    dist_timeout: float = 600.0
    deterministic: bool = False
    monitor: str = "mAP"
    mode: Literal["max", "min"] = "max"

    def validate(self):
        out = (_positive(self, "epochs", "batch_size", "log_every", "grad_clip", "eval_batch_size", "accumulate")
               + _non_negative(self, "num_workers", "checkpoint_every"))
        if self.ema is not None and not 0 < self.ema < 1:
            out.append(("ema", f"must be a decay in (0, 1), got {self.ema}"))
        if self.num_workers > MAX_WORKERS:
            out.append(("num_workers", f"must be <= {MAX_WORKERS} (processes of this machine), got {self.num_workers}"))
        if self.dist_timeout > MAX_TIMEOUT:
            out.append(("dist_timeout", f"must be <= {MAX_TIMEOUT:g} seconds, got {self.dist_timeout:g}"))
        return out + _positive(self, "dist_timeout")


# -- the framework's keys of the optimizer and scheduler sections ----------------------
# Those sections name a plugin (``optimizer: {name: sgd, lr: 0.01}``); these keys sit beside
# the plugin's own and are the framework's: they work with every optimizer and scheduler.
@dataclass
class OptimizerCommon:
    """``backbone_lr_mult``: the learning rate of the parameters under ``model.backbone``
    is the optimizer's times this factor (fine-tuning a pretrained backbone slower than
    a new head)."""

    backbone_lr_mult: float = 1.0

    def validate(self):
        return _non_negative(self, "backbone_lr_mult")


@dataclass
class SchedulerCommon:
    """``warmup_epochs``: the lr rises linearly from ``warmup_factor``×lr to lr over the
    first epochs, step by step; the schedule proper starts after it and spans the rest."""

    warmup_epochs: int = 0
    warmup_factor: float = 0.01

    def validate(self):
        out = _non_negative(self, "warmup_epochs")
        if not 0 < self.warmup_factor <= 1:
            out.append(("warmup_factor", f"must be in (0, 1], got {self.warmup_factor}"))
        return out
