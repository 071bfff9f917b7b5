"""Label indices: a dataset's image list and N×C target matrix, built once and cached.

Reading a dataset's annotations (400 MB of JSON for COCO or Visual Genome, thousands of
XML files for VOC) is done once; the result — class names, and per split the image
paths (relative to the dataset root) and a bit-packed target matrix, with a second bit
plane for the entries that are unknown (partial labels) where a split has any — is stored
in the cache (``$MLCORE_CACHE/index/``, never in the dataset root, which may be read-only).
The cache key covers the dataset's parameters and the size and modification time of
every source file, so an edited annotation file is noticed and the index rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..cache import cache_dir
from ..errors import MlcoreError
from ..files import atomic_open

FORMAT_VERSION = 2  # 2: unknown entries (-1) kept, as a second bit plane


@dataclass
class SplitIndex:
    """One split: image paths relative to the dataset root, and the N×C targets: 1
    positive, 0 negative, and -1 unknown (partial labels: int8; uint8 when none is)."""

    images: list[str]
    targets: np.ndarray


@dataclass
class LabelIndex:
    """Classes and the splits of one dataset."""

    classes: list[str]
    splits: dict[str, SplitIndex] = field(default_factory=dict)

    def split(self, name: str) -> SplitIndex:
        if name not in self.splits:
            raise MlcoreError(f"Unknown value {name!r} for argument split. Valid values are {sorted(self.splits)}")
        return self.splits[name]


def source_stamp(paths: Iterable[str]) -> list[tuple[str, int, int]]:
    """``(absolute path, size, mtime_ns)`` of each source file, for the cache key."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((os.path.abspath(p), st.st_size, st.st_mtime_ns))
    return out


def cache_key(kind: str, params: dict, sources: Sequence[str]) -> str:
    blob = json.dumps([FORMAT_VERSION, kind, params, source_stamp(sources)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def save(index: LabelIndex, path: str) -> None:
    """Write an index atomically (temporary file, then rename)."""
    arrays: dict[str, np.ndarray] = {"classes": np.array(index.classes, dtype=str)}
    for name, s in index.splits.items():
        t = np.asarray(s.targets)
        arrays[f"images/{name}"] = np.array(s.images, dtype=str)
        arrays[f"targets/{name}"] = np.packbits(t == 1, axis=1)
        arrays[f"shape/{name}"] = np.array(t.shape, dtype=np.int64)
        unknown = t < 0
        if unknown.any():
            arrays[f"unknown/{name}"] = np.packbits(unknown, axis=1)
    with atomic_open(path) as f:
        np.savez(f, **arrays)


class DamagedIndexError(ValueError):
    """A cache file that is not a label index as ``save`` writes it."""


def load(path: str) -> LabelIndex:
    """The index ``save`` wrote to ``path``. Raises OSError when the file cannot be read,
    and DamagedIndexError (or whatever the npz reader raises: BadZipFile, EOFError, …)
    when its content is not an intact index; every array's dtype and shape is checked."""
    def check(ok: bool, what: str) -> None:
        if not ok:
            raise DamagedIndexError(what)

    with open(path, "rb") as f:
        head = f.read(4)
        check(head == b"PK\x03\x04", f"not an npz (zip) archive: it starts with {head!r}")
        f.seek(0)
        z = np.load(f, allow_pickle=False)
        check(isinstance(z, np.lib.npyio.NpzFile), "not an npz archive")
        with z:
            names = z["classes"]
            check(names.ndim == 1 and names.dtype.kind == "U", f"classes: {names.dtype} {names.shape}")
            classes = names.tolist()
            split_names = sorted(k.split("/", 1)[1] for k in z.files if k.startswith("images/"))
            expected = {"classes"} | {f"{a}/{n}" for a in ("images", "targets", "shape") for n in split_names}
            optional = {f"unknown/{n}" for n in split_names}
            check(bool(split_names) and expected <= set(z.files) <= expected | optional,
                  f"holds the arrays {sorted(z.files)}, not classes and images/targets/shape "
                  f"(and unknown) of each split")
            splits = {}
            for name in split_names:
                images, packed, shape = z[f"images/{name}"], z[f"targets/{name}"], z[f"shape/{name}"]
                check(images.ndim == 1 and images.dtype.kind == "U",
                      f"images/{name}: {images.dtype} {images.shape}")
                check(shape.shape == (2,) and shape.dtype.kind in "iu",
                      f"shape/{name}: {shape.dtype} {shape.shape}")
                n, c = shape.tolist()
                check(n == len(images) and c == len(classes),
                      f"shape/{name} is {n}×{c} for {len(images)} images and {len(classes)} classes")
                check(packed.dtype == np.uint8 and packed.shape == (n, (c + 7) // 8),
                      f"targets/{name} is {packed.dtype} {packed.shape}, not the packed bits of {n}×{c}")
                targets = np.unpackbits(packed, axis=1, count=c)
                if f"unknown/{name}" in z.files:
                    unknown = z[f"unknown/{name}"]
                    check(unknown.dtype == np.uint8 and unknown.shape == packed.shape,
                          f"unknown/{name} is {unknown.dtype} {unknown.shape}, not the packed bits of {n}×{c}")
                    targets = targets.astype(np.int8)
                    targets[np.unpackbits(unknown, axis=1, count=c).astype(bool)] = -1
                splits[name] = SplitIndex(images.tolist(), targets)
    return LabelIndex(classes, splits)


def cached_index(kind: str, params: dict, sources: Sequence[str], build: Callable[[], LabelIndex]) -> LabelIndex:
    """The index of ``kind`` with ``params`` over ``sources``: from the cache, or built
    by ``build()`` and stored. The cache is derived data, never trusted: a file that
    cannot be read back whole (truncated, random bytes, a bad CRC, missing or mis-shaped
    arrays, unreadable) is rebuilt and overwritten, with a warning naming it."""
    path = os.path.join(cache_dir(), "index", f"{kind}-{cache_key(kind, params, sources)}.npz")
    if os.path.isfile(path):
        try:
            return load(path)
        except Exception as exc:  # whatever the damage, the dataset's own files are the truth
            # e.g. a crash before the rename on a filesystem without atomicity, a copy cut
            # short, a full disk, another program's file
            warnings.warn(f"damaged {kind} label index in the cache, {path!r} ({type(exc).__name__}: {exc}); "
                          f"it is rebuilt from the dataset's files", stacklevel=2)
    index = build()
    try:
        save(index, path)
    except OSError as exc:
        warnings.warn(f"could not cache the {kind} label index in {path!r}: {exc}", stacklevel=2)
    return index


def targets_from_lists(labels: Sequence[Iterable[int]], num_classes: int,
                       unknown: Sequence[Iterable[int]] | None = None) -> np.ndarray:
    """An N×C matrix from per-image lists of class indices: uint8 1/0, or — with
    ``unknown``, per-image lists of the labels whose state is unknown (partial labels) —
    int8 with -1 for those. A label both positive and unknown for an image is positive."""
    t = np.zeros((len(labels), num_classes), dtype=np.uint8 if unknown is None else np.int8)
    if unknown is not None:
        _fill(t, unknown, -1)
    _fill(t, labels, 1)
    return t


def _fill(t: np.ndarray, lists: Sequence[Iterable[int]], value: int) -> None:
    lists = [list(x) for x in lists]
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.fromiter((j for x in lists for j in x), dtype=np.int64, count=len(rows))
    t[rows, cols] = value


_DEFAULT = object()


def dataset_from_index(index: LabelIndex, split: str, root: str, transform=None, default_transform=_DEFAULT):
    """An ImageListDataset of one split, image paths joined to ``root``; without a
    transform it applies ``default_transform`` (default: the default ``data`` section's
    evaluation transform)."""
    from .dataset import ImageListDataset
    from .transforms import default_eval_transform

    s = index.split(split)
    images = [os.path.join(root, p) for p in s.images]
    if default_transform is _DEFAULT:
        default_transform = default_eval_transform()
    return ImageListDataset(images, s.targets, index.classes, transform, default_transform=default_transform)
