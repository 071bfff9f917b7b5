"""MS-COCO (2014 or 2017) from its original files: ``annotations/instances_<split><year>.json``
and the image folders ``<split><year>/``.

An image's labels are the categories of all its annotations (crowd ones included).
Images without any annotation are left out, as the seed did (40,137 val2014 images
remain); ``keep_empty: true`` keeps them. Classes are the category names in the order
of the file's ``categories`` list (the non-contiguous category ids are mapped).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class COCOConfig:
    root: str = field(metadata={"path": "dir"})
    year: int = 2014
    keep_empty: bool = False

    def validate(self):
        return [] if self.year in (2014, 2017) else [("year", f"Unknown value {self.year}. Valid values are [2014, 2017]")]


def build(cfg: COCOConfig, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import coco_index

    return dataset_from_index(coco_index(cfg.root, split, cfg.year, cfg.keep_empty), split, cfg.root, transform)


plugin = Plugin("dataset", "coco", "MS-COCO 2014/2017 (80 classes) from its instances JSON files", COCOConfig, build)
