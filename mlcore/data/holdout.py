"""A fraction of the train split kept aside for calibration (``data.calib_holdout``).

Thresholds fitted on the split they are then judged on look better than they are; a
dataset with only ``train`` and one evaluation split has nowhere honest to fit them. With
``data.calib_holdout: F`` that fraction of the train split is set aside: training never
sees it, and it is the split named ``calib`` (:data:`HOLDOUT_SPLIT`) for ``calibrate``
and ``evaluate``.

Which images are kept aside is a function of the split's length, the fraction and
``train.seed`` only — no global random state — so every run, every resume and every rank
of a torchrun job draw the same ones, and the two parts are disjoint and together the
whole split. The draw is a plain seeded permutation (not stratified by label): with a
small split a rare label may have no positive in either part, which ``calibrate``
reports as a class that took the global threshold.

numpy only: importing this module is light.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MlcoreError

#: the split name under which the held-out part of the train split is offered
HOLDOUT_SPLIT = "calib"
#: mixed into the seed so that the draw is independent of every other use of train.seed
_TAG = 0x63616C69  # "cali"


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)``: sorted positions of an ``n``-image split, ``held`` being
    ``round(n · fraction)`` of them (at least 1, and at least 1 left to train on)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if n < 2:
        raise MlcoreError(f"data.calib_holdout: the train split has {n} image(s); keeping a fraction "
                          f"aside needs at least 2")
    k = min(max(1, int(round(n * fraction))), n - 1)
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, _TAG]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


class SplitPart:
    """The images of ``dataset`` at ``indices``, in that order, as a dataset of its own
    (what ``torch.utils.data.Subset`` is, plus what mlcore reads of a split without
    decoding an image: ``classes``, ``targets`` — the N×C rows of those images — and
    ``images`` when the base has paths). ``name`` says what it is, for messages."""

    def __init__(self, dataset: Any, indices: np.ndarray, name: str):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.name = name
        self.classes = list(dataset.classes)
        self.targets = np.asarray(dataset.targets)[self.indices]
        images = getattr(dataset, "images", None)
        if images is not None:
            self.images = [images[i] for i in self.indices.tolist()]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[int(self.indices[i])]

    def __repr__(self) -> str:
        return f"SplitPart({self.name}: {len(self)} of {len(self.dataset)} images)"


def split_off(dataset: Any, fraction: float, seed: int, *, held: bool,
              what: str = "the train split") -> SplitPart:
    """The part of ``dataset`` that training keeps (``held=False``) or the part kept aside
    for calibration (``held=True``); see :func:`holdout_indices`. A dataset without a
    dense ``targets`` matrix (a sparse one, such as OpenImages) cannot be split this way:
    one error, pointing to ``data.calib_split``."""
    if not hasattr(dataset, "targets"):
        raise MlcoreError(f"data.calib_holdout: {what} has no dense targets matrix to keep a part of; "
                          f"use data.calib_split (a labelled split of the dataset) instead")
    kept, aside = holdout_indices(len(dataset), fraction, seed)
    if held:
        return SplitPart(dataset, aside, f"split {HOLDOUT_SPLIT!r} ({fraction:g} of {what}, seed {seed})")
    return SplitPart(dataset, kept, f"{what} less {fraction:g} kept aside (seed {seed})")


__all__ = ["HOLDOUT_SPLIT", "SplitPart", "holdout_indices", "split_off"]
