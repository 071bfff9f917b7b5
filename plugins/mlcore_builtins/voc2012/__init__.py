"""The Pascal VOC 2012 dataset, read from its original folder layout.

Splits are the lists of ``ImageSets/Main``: ``train`` and ``val`` (the seed's), or
``trainval``. Labels are the ``<object><name>`` values, stripped and lower-cased;
objects marked ``<difficult>1</difficult>`` are skipped (an image whose objects are all
difficult stays, with no positive label). Classes: the 20 VOC names, alphabetical.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class VOC2012Config:
    """``root``: a VOC2012 folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``."""

    root: str = field(metadata={"path": "dir"})


def build(cfg: VOC2012Config, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import VOC_CLASSES, voc_index

    return dataset_from_index(voc_index(cfg.root, VOC_CLASSES, "voc2012"), split, cfg.root, transform)


plugin = Plugin("dataset", "voc2012", "Pascal VOC 2012 (20 classes) from its original layout",
                VOC2012Config, build)
