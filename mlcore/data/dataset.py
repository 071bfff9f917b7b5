"""A base for datasets that are a list of image files with an N×C target matrix
(1 positive, 0 negative, -1 unknown)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .images import read_image


class ImageListDataset(torch.utils.data.Dataset):
    """Images read from files, with their multi-label targets.

    ``classes`` and ``targets`` are known without decoding any image (label statistics
    need only them). ``__getitem__`` returns ``(uint8 [3,H,W], float [C])``. Without a
    ``transform`` the dataset applies ``default_transform`` (its evaluation transform).
    """

    def __init__(self, images: Sequence[str], targets: np.ndarray, classes: Sequence[str],
                 transform: Callable | None = None, default_transform: Callable | None = None):
        targets = np.asarray(targets)
        # 1 positive, 0 negative, -1 unknown (partial labels): int8 keeps the -1
        targets = targets.astype(np.int8 if targets.size and targets.min() < 0 else np.uint8, copy=False)
        if targets.shape != (len(images), len(classes)):
            raise ValueError(f"targets must be {len(images)}×{len(classes)}, got {targets.shape}")
        self.images = list(images)
        self.targets = targets
        self.classes = list(classes)
        self.transform = transform if transform is not None else default_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = read_image(self.images[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, torch.from_numpy(self.targets[i].astype(np.float32))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes)"
