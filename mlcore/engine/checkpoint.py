"""Checkpoints: atomic, checksummed writes and RNG state capture.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed
over the old file, so a crash mid-write leaves the previous checkpoint intact. Each file
ends with a checksum of its content (a zip comment after ``torch.save``'s archive: the
format is described in :mod:`mlcore.weights`), computed during the fsync, so a file
damaged later — a disk error, an interrupted copy — is refused by every load instead
of loading wrong weights; ``torch.load(path, weights_only=True)`` reads it as before.
Reading (``torch.load(weights_only=True)``: a pickle that would run code is refused),
verifying and loading with clear errors live in :mod:`mlcore.weights`, the one loader of
weight files.

``VERSION`` 2 checkpoints always carry the checksum; version 1 ones (written before it)
still load, unverified.
"""
from __future__ import annotations

import os
import random
import struct
from typing import Any

import numpy as np
import torch

from ..errors import MlcoreError
from ..files import atomic_open
from ..weights import CHECKPOINT_FORMAT as FORMAT  # noqa: F401 (the checkpoints this module writes)
from ..weights import CHECKSUM_SINCE_VERSION, CHECKSUM_TAG, TRAILER_LENGTH, ArchiveDigest

#: 2: every file ends with a checksum (1: none; such files still load, unverified)
VERSION = CHECKSUM_SINCE_VERSION
_EOCD = 22  # the zip end-of-central-directory record torch.save ends with (no comment)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file, fsync and rename, the file
    ending with the checksum of the archive ``torch.save`` wrote.

    The archive is hashed once written, read back from the page cache by worker threads
    while this thread waits for its fsync (the disk's time, which the hashing then costs
    nothing of); the checksum comment is appended and fsync'ed with the rename as before.
    """
    try:
        with atomic_open(path, durable=True) as f:
            torch.save(obj, f)
            f.flush()
            length = f.tell()
            with ArchiveDigest(f.name, length, beside=False) as hashing:
                os.fsync(f.fileno())  # the bulk of the bytes, meanwhile hashed
                digest = hashing.hexdigest()
                end = hashing.read(length - _EOCD, _EOCD) if length >= _EOCD else b""
            if end[:4] != b"PK\x05\x06" or end[-2:] != b"\x00\x00":
                raise RuntimeError("torch.save did not end its archive with a plain zip end record; "
                                   "the checksum cannot be appended")
            f.seek(length - 2)  # the end record's comment length, then the comment
            f.write(struct.pack("<H", TRAILER_LENGTH))
            f.seek(length)
            f.write(CHECKSUM_TAG + digest.encode("ascii"))
    except OSError as exc:
        raise MlcoreError(f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}; "
                          f"the previous checkpoint, if any, is unchanged") from exc


def rng_state() -> dict:
    """The states of torch (CPU and CUDA), numpy's global and Python's ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
