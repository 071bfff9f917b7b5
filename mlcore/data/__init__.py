"""Image decoding, the input pipeline's transforms, label indices, and a base class for
list-of-images datasets. Attributes load lazily: reading a label index needs no torch."""
from __future__ import annotations

from typing import Any

_LAZY = {
    "ImageListDataset": "dataset",
    "BadImageError": "images",
    "read_image": "images",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mlcore.data' has no attribute {name!r}")


__all__ = list(_LAZY)
