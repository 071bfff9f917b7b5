"""The seed's input pipeline on uint8 tensors (conversion and normalization happen later,
on the device, in the engine).

Training (as the official SSGRL code): resize to ``scale``², crop at a random place with a
size drawn from ``crops``, resize that to ``crop``², flip horizontally at random.
Evaluation: resize to ``scale``², centre crop ``crop``². Randomness uses torch's global
generator, which the engine seeds per sample so runs and resumes are reproducible.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if img.shape[-2:] == (size, size):
        return img
    return F.resize(img, [size, size], antialias=True)


class EvalTransform:
    """Resize to ``scale``×``scale``, then centre crop ``crop``×``crop``."""

    def __init__(self, scale: int, crop: int):
        self.scale, self.crop = scale, crop

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _resize(img, self.scale)
        if self.crop == self.scale:
            return img
        top = (self.scale - self.crop) // 2
        return img[..., top:top + self.crop, top:top + self.crop]

    def __repr__(self) -> str:
        return f"EvalTransform(scale={self.scale}, crop={self.crop})"


class TrainTransform:
    """Resize, multi-scale random crop, resize to ``crop``, random horizontal flip."""

    def __init__(self, scale: int, crop: int, crops: Sequence[int] | None = None, hflip: bool = True):
        self.scale, self.crop = scale, crop
        self.crops = list(crops) if crops else [crop]
        self.hflip = hflip

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _resize(img, self.scale)
        size = self.crops[int(torch.randint(len(self.crops), ()))] if len(self.crops) > 1 else self.crops[0]
        if size < self.scale:
            top, left = (int(v) for v in torch.randint(self.scale - size + 1, (2,)))
            img = img[..., top:top + size, left:left + size]
        img = _resize(img, self.crop)
        if self.hflip and bool(torch.rand(()) < 0.5):
            img = img.flip(-1)
        return img.contiguous()

    def __repr__(self) -> str:
        return f"TrainTransform(scale={self.scale}, crop={self.crop}, crops={self.crops}, hflip={self.hflip})"


def default_eval_transform() -> EvalTransform:
    """The evaluation transform of the default ``data`` section (what a dataset built
    without a transform applies)."""
    from ..sections import DataSection

    d = DataSection()
    return EvalTransform(d.scale_size, d.crop_size)
