"""Checkpoints: atomic writes and RNG state capture.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed
over the old file, so a crash mid-write leaves the previous checkpoint intact. Reading
(``torch.load(weights_only=True)``: a pickle that would run code is refused) and loading
with clear errors live in :mod:`mlcore.weights`, the one loader of weight files.
"""
from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from ..errors import MlcoreError
from ..files import atomic_open
from ..weights import CHECKPOINT_FORMAT as FORMAT  # noqa: F401 (the checkpoints this module writes)

VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file, fsync and rename."""
    try:
        with atomic_open(path, durable=True) as f:
            torch.save(obj, f)
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
