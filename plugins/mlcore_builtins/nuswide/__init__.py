"""NUS-WIDE (81 concepts) from the official release's files.

``root`` holds ``ConceptsList/Concepts81.txt``, ``ImageList/{Train,Test}Imagelist.txt``,
``Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt`` and the images under
``Flickr/`` (the list's ``actor\\0001_2124494179.jpg`` is ``Flickr/actor/0001_2124494179.jpg``).
Splits ``train`` (161,789 listed images) and ``test`` (107,859). Classes: the concepts in
``Concepts81.txt`` order; an image's labels are the concepts whose label file says 1 on
its line.

Many of the images are gone from Flickr, so every copy of the dataset misses some:
``missing_images: skip`` (the default) leaves out the listed images whose file does not
exist, with one warning giving their count and the first few names; ``error`` stops with
an error naming them instead. ``drop_unlabeled: true`` leaves out the images with no
positive concept (the variant most papers train and evaluate on); the default keeps them,
as the release lists them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin


@dataclass
class NUSWIDEConfig:
    """``root``: the NUS-WIDE folder; ``missing_images``: ``skip`` or ``error`` (see the
    module's docstring); ``drop_unlabeled``: leave out images with no positive concept."""

    root: str = field(metadata={"path": "dir"})
    missing_images: Literal["skip", "error"] = "skip"
    drop_unlabeled: bool = False


def build(cfg: NUSWIDEConfig, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import nuswide_split

    index = nuswide_split(cfg.root, split, cfg.missing_images, cfg.drop_unlabeled)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "nuswide", "NUS-WIDE (81 concepts) from the official release's lists and label files",
                NUSWIDEConfig, build)
