"""The seed's input pipeline on uint8 tensors (conversion and normalization happen later,
on the device, in the engine).

Training (as the official SSGRL code): resize to ``scale``², crop at a random place with a
size drawn from ``crops``, resize that to ``crop``², flip horizontally at random; then,
optionally, RandAugment and Cutout. The two resizes are fused into one: the crop box is
mapped back onto the decoded image and that region is resized to ``crop``² directly —
the same geometry, one interpolation instead of two, and no full-size intermediate.
With ``random_resized_crop`` (an area range), the crop is torchvision's RandomResizedCrop
on the decoded image instead. Evaluation: resize to ``scale``², centre crop ``crop``². Randomness uses torch's global
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
    """Multi-scale random crop (in ``scale``² coordinates), resize to ``crop``², random
    horizontal flip, then optional RandAugment and Cutout (a ``cutout``-sized square of
    the crop side, filled with the ImageNet mean colour)."""

    def __init__(self, scale: int, crop: int, crops: Sequence[int] | None = None, hflip: bool = True,
                 randaugment: bool = False, cutout: float = 0.0,
                 random_resized_crop: Sequence[float] | None = None):
        self.scale, self.crop = scale, crop
        #: torchvision's RandomResizedCrop area range on the decoded image (aspect ratio
        #: 3/4–4/3) instead of the multi-scale square crop: CSRA's and ASL's training crop
        self.area = tuple(random_resized_crop) if random_resized_crop else None
        self.crops = list(crops) if crops else [crop]
        self.hflip = hflip
        self.cutout = cutout
        self.randaugment = None
        if randaugment:
            from torchvision.transforms import v2

            self.randaugment = v2.RandAugment()

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        if self.area is not None:
            from torchvision.transforms import RandomResizedCrop

            y0, x0, hh, ww = RandomResizedCrop.get_params(img, list(self.area), [3 / 4, 4 / 3])
            img = F.resized_crop(img, y0, x0, hh, ww, [self.crop, self.crop], antialias=True)
            return self._augment(img)
        h, w = img.shape[-2:]
        size = self.crops[int(torch.randint(len(self.crops), ()))] if len(self.crops) > 1 else self.crops[0]
        top, left = (int(v) for v in torch.randint(self.scale - size + 1, (2,))) if size < self.scale else (0, 0)
        # the box in the decoded image that the two-step recipe would end up showing
        y0, y1 = round(top * h / self.scale), round((top + size) * h / self.scale)
        x0, x1 = round(left * w / self.scale), round((left + size) * w / self.scale)
        img = F.resized_crop(img, y0, x0, max(y1 - y0, 1), max(x1 - x0, 1), [self.crop, self.crop], antialias=True)
        return self._augment(img)

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        """The flip, RandAugment and Cutout, after the crop."""
        if self.hflip and bool(torch.rand(()) < 0.5):
            img = img.flip(-1)
        if self.randaugment is not None:
            img = self.randaugment(img)
        if self.cutout > 0:
            side = max(1, int(self.cutout * self.crop))
            cy, cx = (int(v) for v in torch.randint(self.crop, (2,)))
            img = img.clone()
            img[:, max(cy - side // 2, 0):cy + side // 2 + 1, max(cx - side // 2, 0):cx + side // 2 + 1] = \
                torch.tensor([124, 116, 104], dtype=img.dtype).view(3, 1, 1)
        return img.contiguous()

    def __repr__(self) -> str:
        geometry = f"random_resized_crop={list(self.area)}" if self.area else f"scale={self.scale}, crops={self.crops}"
        return (f"TrainTransform({geometry}, crop={self.crop}, hflip={self.hflip}, "
                f"randaugment={self.randaugment is not None}, cutout={self.cutout})")


def default_eval_transform() -> EvalTransform:
    """The evaluation transform of the default ``data`` section (what a dataset built
    without a transform applies)."""
    from ..sections import DataSection

    d = DataSection()
    return EvalTransform(d.scale_size, d.crop_size)
