"""Decoding image files to uint8 CHW RGB tensors."""
from __future__ import annotations

import os
import warnings

import torch

from ..errors import MlcoreError

# torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still are the
# fastest JPEG path here, and Pillow takes over wherever they are gone or fail.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


class BadImageError(MlcoreError):
    """An image file that is missing or cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"cannot read image {path!r}: {reason}")


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """The image at ``path`` as a uint8 tensor [3, H, W] in RGB.

    JPEG and PNG go through torchvision's fast decoders; anything else (or anything they
    reject, such as CMYK JPEGs) through Pillow. Raises BadImageError naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadImageError(path, "no such file")
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file

        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except Exception:  # not JPEG/PNG, or a variant libjpeg rejects: let Pillow try
        pass
    try:
        from PIL import Image
        import numpy as np

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    except Exception as exc:
        raise BadImageError(path, f"{type(exc).__name__}: {exc}") from None


def pil_to_tensor(image) -> torch.Tensor:
    """A PIL image as uint8 [3, H, W] RGB."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
