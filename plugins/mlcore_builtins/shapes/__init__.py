"""``shapes``: a procedurally drawn multi-label dataset, for demos, tests and tutorials.

Ten classes (red/blue × circle, square, triangle, cross, ring), one to four objects per
image, scenes that make some classes co-occur. It is generated once into the cache
(``$MLCORE_CACHE/shapes/<parameters>/``, or ``root`` when given) in the Pascal VOC
layout, and read back through ordinary file decoding like any real dataset.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from mlcore import Plugin


@dataclass
class ShapesConfig:
    root: str | None = None
    num_train: int = 1600
    num_val: int = 400
    image_size: int = 64
    seed: int = 0

    def validate(self):
        out = [(k, f"must be > 0, got {getattr(self, k)}") for k in ("num_train", "num_val") if getattr(self, k) <= 0]
        if self.image_size < 16:
            out.append(("image_size", f"must be >= 16, got {self.image_size}"))
        return out


def dataset_root(cfg: ShapesConfig) -> str:
    """Where the generated files live; generated on first call."""
    from mlcore import cache_dir

    from .generate import VERSION, generate

    root = cfg.root or os.path.join(
        cache_dir(), "shapes", f"v{VERSION}-n{cfg.num_train}-{cfg.num_val}-s{cfg.image_size}-seed{cfg.seed}")
    if not os.path.isfile(os.path.join(root, "ImageSets", "Main", "val.txt")):
        generate(root, num_train=cfg.num_train, num_val=cfg.num_val, image_size=cfg.image_size, seed=cfg.seed)
    return root


def build(cfg: ShapesConfig, split: str, transform=None):
    from mlcore import dataset_from_index
    from mlcore_builtins.voc2012.reader import voc_index

    from .generate import CLASSES

    root = dataset_root(cfg)
    # images are image_size² already: without a transform they are used as drawn
    return dataset_from_index(voc_index(root, CLASSES, "shapes"), split, root, transform, default_transform=None)


plugin = Plugin("dataset", "shapes", "procedurally drawn coloured shapes (10 classes), for demos and tests",
                ShapesConfig, build)
