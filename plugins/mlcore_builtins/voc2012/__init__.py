"""The Pascal VOC 2012 dataset, read from its original folder layout."""
from __future__ import annotations

from dataclasses import dataclass

from mlcore.plugin import Plugin


@dataclass
class VOC2012Config:
    """``root``: a VOC2012 folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``."""

    root: str


def build(cfg: VOC2012Config, split: str, transform=None):
    from mlcore.data import EvalTransform, ImageListDataset

    from .reader import VOC_CLASSES, read_split

    images, targets = read_split(cfg.root, split, VOC_CLASSES)
    return ImageListDataset(images, targets, VOC_CLASSES, transform, default_transform=EvalTransform(512, 448))


plugin = Plugin("dataset", "voc2012", "Pascal VOC 2012 (20 classes) from its original layout",
                VOC2012Config, build)
