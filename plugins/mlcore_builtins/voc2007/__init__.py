"""The Pascal VOC 2007 dataset, read from its original folder layout.

The standard protocol of the multi-label literature (ML-GCN, CSRA, ASL, Query2Label)
trains on ``trainval`` (5,011 images) and tests on ``test`` (4,952): put the trainval
and test releases in one ``VOC2007`` folder (both archives unpack into
``VOCdevkit/VOC2007``), so that ``ImageSets/Main`` holds ``train``, ``val``,
``trainval`` and ``test``. Labels and the ``difficult`` rule are as ``voc2012``'s:
``drop`` (the default, the seed's rule), ``ignore`` (a label seen only in difficult
objects of an image is unknown there: left out of the loss and of that label's AP —
how mmpretrain evaluates VOC, and what ML-GCN's evaluation does) or ``positive`` (what
ML-GCN's training does) — for every split, or per split as a mapping (ML-GCN's
protocol: ``{trainval: positive, test: ignore}``; a split not named: ``drop``). An
object that is difficult in one box and not in another makes the label positive in
every mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin


@dataclass
class VOC2007Config:
    """``root``: a VOC2007 folder holding ``Annotations/``, ``JPEGImages/``,
    ``ImageSets/Main/`` (trainval and test merged); ``difficult``: ``drop``, ``ignore``
    or ``positive``, or a mapping of split names to those."""

    root: str = field(metadata={"path": "dir"})
    difficult: Literal["drop", "ignore", "positive"] | dict[str, Literal["drop", "ignore", "positive"]] = "drop"

    def validate(self):
        from mlcore_builtins.voc2012.reader import DIFFICULT_MODES

        if not isinstance(self.difficult, dict):
            return []
        return [("difficult", f"{split}: Unknown value {mode!r}. Valid values are {list(DIFFICULT_MODES)}")
                for split, mode in self.difficult.items() if mode not in DIFFICULT_MODES]


def build(cfg: VOC2007Config, split: str, transform=None):
    from mlcore import dataset_from_index
    from mlcore_builtins.voc2012.reader import VOC_CLASSES, voc_index

    index = voc_index(cfg.root, VOC_CLASSES, "voc2007", cfg.difficult)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "voc2007", "Pascal VOC 2007 (20 classes; trainval → test) from its original layout",
                VOC2007Config, build)
