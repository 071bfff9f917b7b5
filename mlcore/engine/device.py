"""Choosing the device and turning uint8 batches into normalized float batches on it."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for, but CUDA is not available here")
    return dev


class Normalizer:
    """uint8 [B,3,H,W] → float ``(x/255 - mean)/std``, computed on the batch's device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor([m * 255.0 for m in mean]).view(1, 3, 1, 1)
        self.inv_std = torch.tensor([1.0 / (s * 255.0) for s in std]).view(1, 3, 1, 1)
        self._cache: dict = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        key = images.device
        if key not in self._cache:
            self._cache[key] = (self.mean.to(key), self.inv_std.to(key))
        mean, inv_std = self._cache[key]
        return images.float().sub_(mean).mul_(inv_std)  # one allocation, two in-place passes


def autocast(amp: str, device: torch.device):
    """A ``torch.autocast`` context for ``train.amp`` (``bf16``, ``fp16``, ``off``: a no-op)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "off")
