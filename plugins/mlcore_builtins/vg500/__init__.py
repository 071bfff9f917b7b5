"""VG500: Visual Genome 1.4's 500 most frequent object names, split as the seed did.

``root`` is a Visual Genome 1.4 folder (``objects.json``, ``VG_100K/``, ``VG_100K_2/``).
``train_list``/``val_list`` (files of image names, as in the official SSGRL release)
replace the seed's random 80/20 split when given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class VG500Config:
    root: str = field(metadata={"path": "dir"})
    train_list: str | None = field(default=None, metadata={"path": "file"})
    val_list: str | None = field(default=None, metadata={"path": "file"})


def build(cfg: VG500Config, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import vg_index

    index = vg_index(cfg.root, train_list=cfg.train_list, val_list=cfg.val_list)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "vg500", "Visual Genome's 500 most frequent objects (the seed's VG500 split)",
                VG500Config, build)
