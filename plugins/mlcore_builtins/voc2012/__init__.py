"""The Pascal VOC 2012 dataset, read from its original folder layout.

Splits are the lists of ``ImageSets/Main``: ``train`` and ``val`` (the seed's), or
``trainval``. Labels are the ``<object><name>`` values, stripped and lower-cased.
``difficult`` says what a label whose objects in an image are all ``<difficult>1`` gives:
``drop`` (the seed's rule, the default: nothing, so negative; an image whose objects are
all difficult stays, with no positive label), ``ignore`` (unknown: neither positive nor
negative, left out of the loss and of the label's AP) or ``positive``. Classes: the 20
VOC names, alphabetical.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin


Difficult = Literal["drop", "ignore", "positive"]


@dataclass
class VOCConfig:
    """``root``: a VOC folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``;
    ``difficult``: ``drop``, ``ignore`` or ``positive``, or a mapping of split names to
    those (see the module's docstring)."""

    root: str = field(metadata={"path": "dir"})
    difficult: Difficult | dict[str, Difficult] = "drop"

    def validate(self):
        from .reader import DIFFICULT_MODES

        if not isinstance(self.difficult, dict):
            return []
        return [("difficult", f"{split}: Unknown value {mode!r}. Valid values are {list(DIFFICULT_MODES)}")
                for split, mode in self.difficult.items() if mode not in DIFFICULT_MODES]


def voc_builder(kind: str):
    """The ``build`` of a VOC-layout dataset whose index is cached as ``kind``."""
    def build(cfg: VOCConfig, split: str, transform=None):
        from mlcore import dataset_from_index

        from .reader import VOC_CLASSES, voc_index

        index = voc_index(cfg.root, VOC_CLASSES, kind, cfg.difficult)
        return dataset_from_index(index, split, cfg.root, transform)

    return build


plugin = Plugin("dataset", "voc2012", "Pascal VOC 2012 (20 classes) from its original layout",
                VOCConfig, voc_builder("voc2012"))
