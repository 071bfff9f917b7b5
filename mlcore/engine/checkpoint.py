"""Checkpoints: atomic writes, safe reads, RNG state capture, and clear load errors.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed
over the old file, so a crash mid-write leaves the previous checkpoint intact. Reads use
``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""
from __future__ import annotations

import os
import pickle
import random
import re
from typing import Any

import numpy as np
import torch

from ..errors import MlcoreError
from ..files import atomic_open

FORMAT = "mlcore-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file, fsync and rename."""
    try:
        with atomic_open(path, durable=True) as f:
            torch.save(obj, f)
    except OSError as exc:
        raise MlcoreError(f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}; "
                          f"the previous checkpoint, if any, is unchanged") from exc


def _numpy_scalar_globals() -> list:
    """The numpy types a scalar such as the official SSGRL's ``best_mAP`` pickles as —
    plain data, let through ``weights_only`` loading, and nothing more."""
    out: list = [np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            import importlib

            out.append(importlib.import_module(mod).scalar)
            break
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                if hasattr(dtypes, n)]
    return out


def safe_load(path: str | os.PathLike) -> Any:
    """Read a checkpoint or weights file without running code from it (tensors,
    containers, numbers and numpy scalars only)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MlcoreError(f"checkpoint {path!r} does not exist")
    try:
        ctx = getattr(torch.serialization, "safe_globals", None)
        if ctx is None:  # torch < 2.5
            torch.serialization.add_safe_globals(_numpy_scalar_globals())
            return torch.load(path, map_location="cpu", weights_only=True)
        with ctx(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
        if found:
            raise MlcoreError(f"{path!r} was refused: loading it would run code ({found.group(1)}); "
                              f"only plain tensors and containers are read from checkpoints") from None
        raise MlcoreError(f"{path!r} is not a readable PyTorch checkpoint") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise MlcoreError(f"{path!r} is not a readable PyTorch checkpoint: {exc}") from exc


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


def model_state(obj: Any, path: str) -> dict:
    """The model weights in a loaded file: an mlcore checkpoint's ``model``; the
    ``state_dict`` or ``model_state_dict`` of other trainers' checkpoints (the official
    SSGRL's ``{epoch, state_dict, best_mAP}``, the seed's); or a plain state dict. The
    ``module.`` prefix of DataParallel/DDP saves is dropped."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj["model"]
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {k.removeprefix("module."): v for k, v in obj.items()}
    raise MlcoreError(f"{path!r} holds no model weights (neither an mlcore checkpoint nor a state dict)")


def load_weights_file(model: torch.nn.Module, path: str) -> Any:
    """Load a whole model's weights from ``path``; returns what the file held.

    A model whose parameters were named differently elsewhere (the seed's, the official
    code's) declares ``remap_state_dict(state) -> state``; it is applied first.
    """
    obj = safe_load(path)
    state = model_state(obj, path)
    remap = getattr(model, "remap_state_dict", None)
    if callable(remap):
        state = remap(state)
    load_model_weights(model, state, path)
    return obj


def load_model_weights(model: torch.nn.Module, state: dict, source: str, *, ignore: tuple[str, ...] = (),
                       what: str = "checkpoint", hint: str = "another model or another number of labels?") -> None:
    """Load ``state`` into ``model``, naming each missing, unexpected or mis-shaped parameter.

    Keys starting with an ``ignore`` prefix are left out on both sides (e.g. ``fc.`` when a
    classification head is replaced); every other key must match exactly.
    """
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    shapes = [f"{k}: {what} has shape {tuple(v.shape)}, the model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    problems = shapes[:8] + ([f"… and {len(shapes) - 8} more of other shapes"] if len(shapes) > 8 else [])
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        problems.append(f"missing from the {what}: {_few(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_few(unexpected)}")
    if problems:
        raise MlcoreError(f"{what} {source!r} does not fit the model ({hint}):\n  " + "\n  ".join(problems))
    model.load_state_dict(state, strict=not ignore)


def _few(keys: list[str], n: int = 5) -> str:
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
