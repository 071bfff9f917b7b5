"""``listfile``: any dataset written in the seed's list format.

``root`` holds a label file (``label.txt``: one class per line, in output order) and one
list per split (``train.txt``, ``val.txt``, …) of lines ``image_path<TAB>label1,label2``.

Paths: ``root`` is relative to the working directory (as every path of a config);
``label_file`` and ``image_root`` are relative to ``root`` (as every path a dataset reads
inside its folder), and the image paths of a list to ``image_root`` (default: ``root``).
An absolute path is used as it is. Messages show a path as written and as resolved.

Files are read as ``utf-8-sig`` (a byte-order mark is ignored). An image listed twice in
one list is warned about (count, names, line numbers). Missing images are reported all
at once — their count and the first few, with line numbers — as an error
(``missing_images: error``, the default: a list of one's own should be complete, and a
wrong ``image_root`` misses every image) or as a warning that leaves them out (``skip``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin


@dataclass
class ListFileConfig:
    root: str = field(metadata={"path": "dir"})
    label_file: str = field(default="label.txt", metadata={"path": "file", "relative_to": "root"})
    image_root: str | None = field(default=None, metadata={"path": "dir", "relative_to": "root"})
    missing_images: Literal["error", "skip"] = "error"


def build(cfg: ListFileConfig, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import list_index

    index = list_index(cfg.root, split, cfg.label_file, cfg.image_root, cfg.missing_images)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "listfile", "image lists with labels (the seed's format) for any dataset",
                ListFileConfig, build)
