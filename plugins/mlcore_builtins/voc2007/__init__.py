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

from mlcore import Plugin
from mlcore_builtins.voc2012 import VOCConfig, voc_builder

plugin = Plugin("dataset", "voc2007", "Pascal VOC 2007 (20 classes; trainval → test) from its original layout",
                VOCConfig, voc_builder("voc2007"))
