"""LabelInfo: what a model may know about the labels, computed from the train split only.

Graph models such as SSGRL need label co-occurrence; building it from train + val (as the
seed did) leaks validation labels into the model, so the builder only ever passes the
train split's targets here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelInfo:
    """Label statistics of a training split.

    classes: the label names, in model output order.
    counts: (C,) number of training images carrying each label.
    cooccurrence: (C, C) number of training images carrying both label i and label j
        (the diagonal equals ``counts``).
    num_images: number of training images.
    """

    classes: list[str]
    counts: np.ndarray
    cooccurrence: np.ndarray
    num_images: int

    @classmethod
    def from_targets(cls, classes: list[str], targets) -> "LabelInfo":
        """Build from an N×C 0/1 matrix (numpy array or anything ``np.asarray`` takes)."""
        t = np.asarray(targets)
        if t.ndim != 2 or t.shape[1] != len(classes):
            raise ValueError(f"targets must be N×{len(classes)}, got shape {t.shape}")
        t = (t > 0).astype(np.int64)
        return cls(list(classes), t.sum(0), t.T @ t, int(t.shape[0]))

    @property
    def num_classes(self) -> int:
        return len(self.classes)
