"""``listfile``: any dataset written in the seed's list format.

``root`` holds a label file (``label.txt``: one class per line, in output order) and one
list per split (``train.txt``, ``val.txt``, …) of lines ``image_path<TAB>label1,label2``.
Relative image paths start at ``image_root`` (default: ``root``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class ListFileConfig:
    root: str = field(metadata={"path": "dir"})
    label_file: str = "label.txt"
    image_root: str | None = field(default=None, metadata={"path": "dir"})


def build(cfg: ListFileConfig, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import list_index

    index = list_index(cfg.root, split, cfg.label_file, cfg.image_root)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "listfile", "image lists with labels (the seed's format) for any dataset",
                ListFileConfig, build)
