"""The OpenImages dataset object: sparse targets, densified one sample at a time.

Nothing here holds an N×C matrix: ``__getitem__`` fills a C-length vector from the
image's CSR slice, ``label_info()`` counts co-occurrences from sparse per-image pairs,
and ``targets`` is a :class:`SparseTargets` view that densifies the rows asked for (the
core checks that a dataset has ``targets``; all of it as one array only when it is small).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from mlcore import LabelInfo, MlcoreError, read_image

from .reader import SparseIndex

#: the most entries ``np.asarray(ds.targets)`` gives as one dense int8 array (1 GiB):
#: the validation split (41,620 × 9,605 = 0.4 G) fits, the train split (86 G) does not
DENSE_LIMIT = 1 << 30


def dense_rows(index: SparseIndex, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """int8 rows (len(rows) × C) of the given images: -1 unknown, 0 verified negative, 1 positive."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    c = len(index.classes)
    out = np.full((len(rows), c), -1, dtype=np.int8)
    if not len(rows):
        return out
    lo, hi = index.offsets[rows], index.offsets[rows + 1]
    size = hi - lo
    which = np.repeat(np.arange(len(rows)), size)
    at = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size) + np.repeat(lo, size)
    out[which, index.labels[at]] = index.positive[at]
    return out


class SparseTargets:
    """A read-only N×C view of the targets (1, 0, -1 unknown) that is never dense as a
    whole unless small: ``view[i]``, ``view[a:b]``, ``view[[i, j]]`` give int8 rows;
    ``np.asarray(view)`` works up to :data:`DENSE_LIMIT` entries and otherwise raises,
    naming the sparse ways (``label_info()``, ``num_unknown``, ``targets_of``)."""

    dtype = np.dtype(np.int8)
    ndim = 2

    def __init__(self, index: SparseIndex):
        self._index = index
        self.shape = (index.num_images, len(index.classes))

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of range for {n} images")
            return dense_rows(self._index, [i])[0]
        if isinstance(key, slice):
            return dense_rows(self._index, np.arange(n)[key])
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return dense_rows(self._index, np.where(rows < 0, rows + n, rows))

    def __iter__(self) -> Iterator[np.ndarray]:
        for a in range(0, self.shape[0], 4096):
            yield from self[a:a + 4096]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self.size > DENSE_LIMIT:
            raise MlcoreError(f"the openimages targets are {self.shape[0]}×{self.shape[1]} "
                              f"({self.size / 2**30:.1f} G entries): too large for one dense array; "
                              f"use the dataset's label_info(), num_unknown or targets_of(indices)")
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"SparseTargets({self.shape[0]}×{self.shape[1]}, {len(self._index.labels)} known entries)"


class ImagePaths(Sequence):
    """The image paths, made on demand from the ImageIDs (9M path strings would be ~1 GB)."""

    def __init__(self, root: str, folder: str, image_ids: np.ndarray):
        self.root, self.folder, self.image_ids = root, folder, image_ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return os.path.join(self.root, self.folder, self.image_ids[i].decode("utf-8") + ".jpg")


class OpenImagesDataset(torch.utils.data.Dataset):
    """One split of Open Images: ``classes`` (trainable LabelNames, the trainable file's
    order), ``display_names``, ``__getitem__`` → (uint8 [3,H,W] image, float32 [C] target
    with -1 unknown, 0 verified negative, 1 positive), ``label_info()`` and
    ``num_unknown`` from the sparse labels, ``targets_of(indices)`` for dense rows."""

    def __init__(self, index: SparseIndex, root: str, folder: str, transform: Callable | None = None):
        self.index = index
        self.root, self.folder = root, folder
        self.classes = list(index.classes)
        self.display_names = list(index.display_names)
        self.images = ImagePaths(root, folder, index.image_ids)
        self.targets = SparseTargets(index)
        self.transform = transform

    # the CSR arrays (memory-mapped when the index comes from the cache)
    @property
    def image_ids(self) -> np.ndarray:
        return self.index.image_ids

    @property
    def offsets(self) -> np.ndarray:
        return self.index.offsets

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels

    @property
    def positive(self) -> np.ndarray:
        return self.index.positive

    def __len__(self) -> int:
        return self.index.num_images

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = read_image(self.images[i])
        if self.transform is not None:
            img = self.transform(img)
        lo, hi = int(self.index.offsets[i]), int(self.index.offsets[i + 1])
        target = np.full(len(self.classes), -1.0, dtype=np.float32)
        target[self.index.labels[lo:hi]] = self.index.positive[lo:hi]
        return img, torch.from_numpy(target)

    def targets_of(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense int8 rows (1, 0, -1) of the given samples."""
        return dense_rows(self.index, indices)

    @property
    def num_known(self) -> int:
        """Entries that are known (positive or verified negative)."""
        return int(len(self.index.labels))

    @property
    def num_unknown(self) -> int:
        """N×C minus the known entries: the trainer checks the loss leaves them out."""
        return len(self) * len(self.classes) - self.num_known

    def positives_per_image(self) -> np.ndarray:
        """Positive labels of each image, from the sparse labels (no dense matrix):
        for ``prepare`` and ``analyze``'s split table."""
        offsets = np.asarray(self.offsets)
        csum = np.concatenate([[0], np.cumsum(np.asarray(self.positive), dtype=np.int64)])
        return csum[offsets[1:]] - csum[offsets[:-1]]

    def label_info(self, chunk_pairs: int = 1 << 24) -> LabelInfo:
        """Counts and co-occurrences over known positives only (an unknown label is not
        counted): C×C int32 (9,605² is 369 MB; int64 would be 738 MB), filled from the
        pairs of positive classes of each image, a chunk of images at a time (sorted
        pair keys, counted by run length: no C×C temporary)."""
        c = len(self.classes)
        off, labels, positive = self.index.offsets, self.index.labels, self.index.positive
        counts = np.zeros(c, dtype=np.int64)
        co = np.zeros((c, c), dtype=np.int32)
        flat = co.reshape(-1)
        n = len(self)
        step = max(1, min(n, 1 << 20))
        for a in range(0, n, step):
            b = min(n, a + step)
            lo, hi = int(off[a]), int(off[b])
            pos = np.asarray(positive[lo:hi])
            cls = np.asarray(labels[lo:hi])[pos].astype(np.int64)
            counts += np.bincount(cls, minlength=c)
            # positives per image of the chunk, and each positive's place among its image's
            image = np.repeat(np.arange(b - a), np.diff(np.asarray(off[a:b + 1])))[pos]
            k = np.bincount(image, minlength=b - a)
            start = np.cumsum(k) - k
            place = np.arange(len(cls)) - start[image]
            after = k[image] - 1 - place  # pairs (this, a later positive of the image)
            _add_pairs(flat, c, cls, after, chunk_pairs)
        for a in range(0, c, 1024):  # mirror the upper triangle, a block of rows at a time
            b = min(c, a + 1024)
            co[a:b, :a] = co[:a, a:b].T
            co[a:b, a:b] += co[a:b, a:b].T.copy()
        co[np.diag_indices(c)] = counts
        return LabelInfo(list(self.classes), counts, co, n)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes, "
                f"{self.num_known} known labels)")


def _add_pairs(flat: np.ndarray, c: int, cls: np.ndarray, after: np.ndarray, chunk_pairs: int) -> None:
    """For each positive e, the pairs (e, e+1 … e+after[e]) of its image, as upper-triangle
    keys min·C+max, added into ``flat`` (C×C raveled) in pieces of ≤ ``chunk_pairs``."""
    ends = np.cumsum(after)
    done, e0 = 0, 0
    while e0 < len(cls):
        e1 = int(np.searchsorted(ends, done + chunk_pairs, side="right"))
        e1 = max(e1, e0 + 1)
        rep = after[e0:e1]
        total = int(rep.sum())
        if total:
            first = np.repeat(np.arange(e0, e1), rep)
            second = first + 1 + np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
            i, j = cls[first], cls[second]
            key = np.minimum(i, j) * c + np.maximum(i, j)
            del first, second, i, j
            key.sort()
            new = np.empty(len(key), dtype=bool)
            new[0] = True
            np.not_equal(key[1:], key[:-1], out=new[1:])
            starts = np.flatnonzero(new)
            flat[key[starts]] += np.diff(np.append(starts, len(key))).astype(flat.dtype)
        done = int(ends[e1 - 1])
        e0 = e1
