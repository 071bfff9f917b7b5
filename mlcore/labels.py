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

    def conditional_probabilities(self) -> np.ndarray:
        """P(j | i) = cooccurrence[i, j] / counts[i]: how often label j is present in the
        training images that carry label i — the label graph of SSGRL and ML-GCN.

        A float64 C×C matrix, not symmetric (row i is conditioned on label i). A label never
        seen in training has a zero row (nothing is known of what comes with it). The
        diagonal is left as computed: 1 for every seen label, 0 for an unseen one; SSGRL
        zeroes it, ML-GCN re-weights it, so each model decides.
        """
        counts = np.asarray(self.counts, dtype=np.float64)
        co = np.asarray(self.cooccurrence, dtype=np.float64)
        out = np.zeros_like(co)
        seen = counts > 0
        out[seen] = co[seen] / counts[seen, None]
        return out
