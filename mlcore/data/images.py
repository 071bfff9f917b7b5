"""Decoding image files to uint8 CHW RGB tensors.

Every image reaches the pipeline as uint8 RGB [3, H, W], whatever its mode: the result
is what Pillow's ``convert("RGB")`` gives (grey replicated, palette looked up, alpha and
transparency dropped without compositing, CMYK converted, 1-bit as 0/255, 32-bit integer
"I" and float "F" clipped to 0..255), with one exception: 16-bit samples (16-bit PNGs,
grey or colour, and Pillow's "I;16*" modes) are scaled down to their high byte
(``v >> 8``). That is Pillow's own down-scaling of 16-bit colour PNGs; for 16-bit grey
Pillow's ``convert`` would clip every value above 255 to white instead, which turns a
real 16-bit photograph into a white sheet. The first frame of an animated file is used.
"""
from __future__ import annotations

import os
import warnings

import torch

from ..errors import MlcoreError

# torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still are the
# fastest JPEG path here, and Pillow takes over wherever they are gone or fail.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

# Formats whose torchvision decoding differs from Pillow's convert("RGB"): GIF (it blanks
# transparent pixels and gives every frame of an animation).
_PILLOW_ONLY_MAGIC = (b"GIF87a", b"GIF89a")


class BadImageError(MlcoreError):
    """An image file that is missing or cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"cannot read image {path!r}: {reason}")


def _to_uint8_rgb(t: torch.Tensor) -> torch.Tensor | None:
    """A decoder's [3,H,W] tensor as uint8 (16-bit samples: the high byte), or None when
    it is not a single RGB image."""
    if t.ndim != 3 or t.shape[0] != 3:
        return None
    if t.dtype == torch.uint16:
        t = (t.to(torch.int32) >> 8).to(torch.uint8)
    elif t.dtype != torch.uint8:
        return None
    return t.contiguous()


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """The image at ``path`` as a contiguous uint8 tensor [3, H, W] in RGB (see the module
    docstring for how each mode is converted).

    JPEG, PNG and WebP go through torchvision's fast decoders; anything else (GIF, TIFF,
    BMP, …, or anything they reject) through Pillow. Raises BadImageError naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadImageError(path, "no such file")
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file

        data = read_file(path)
        if bytes(data[:6].tolist()) not in _PILLOW_ONLY_MAGIC:
            out = _to_uint8_rgb(decode_image(data, mode=ImageReadMode.RGB))
            if out is not None:
                return out
    except Exception:  # not a format torchvision decodes, or a variant it rejects: let Pillow try
        pass
    try:
        from PIL import Image

        with Image.open(path) as im:
            return pil_to_tensor(im)
    except Exception as exc:
        raise BadImageError(path, f"{type(exc).__name__}: {exc}") from None


def pil_to_tensor(image) -> torch.Tensor:
    """A PIL image as a contiguous uint8 [3, H, W] RGB tensor: ``convert("RGB")``, but
    16-bit modes ("I;16", "I;16B", …) scaled to their high byte as 16-bit PNGs are."""
    import numpy as np

    if image.mode.startswith("I;16"):
        grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        arr = np.repeat(grey[..., None], 3, axis=2)
    else:
        try:
            arr = np.asarray(image.convert("RGB"))
        except ValueError as exc:  # a mode Pillow cannot convert (e.g. premultiplied "La")
            raise MlcoreError(f"cannot convert an image of mode {image.mode!r} to RGB: {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
