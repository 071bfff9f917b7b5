"""Weight files: one reader, key-layout adapters, and strict loading with clear errors.

Every weights file mlcore reads — a backbone's pretrained ImageNet weights, a whole
trained model (an mlcore checkpoint, the seed's, an official paper's), a checkpoint to
evaluate or resume — goes through :func:`read_weights` and :func:`load_state`, so the
safety rules, the unwrapping of other trainers' containers and the error messages are
written once:

* nothing runs from a file: torch files are read with ``torch.load(weights_only=True)``
  (tensors, containers, numbers, numpy scalars), ``.safetensors`` with safetensors;
* a file's tensors are found inside the common wrappers (an mlcore checkpoint's ``model``,
  ``state_dict``, ``model_state_dict``, ``model``), and DataParallel's ``module.``
  prefix is dropped;
* loading is strict: every missing, unexpected or mis-shaped parameter is named.

Files written by other code often name the same parameters differently (the official
SSGRL calls the backbone ``resnet_101``). A model says which such layouts it accepts by
declaring ``weight_layouts``, a tuple of :class:`WeightLayout`; :func:`load_weights`
recognizes a file's layout, renames its keys, and tells the model which layout it read
through an optional ``weights_loaded(layout)`` method (SSGRL switches its reset gate).

Importing this module is light (torch is imported when a file is read), so a plugin may
declare its layouts anywhere.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MlcoreError

if TYPE_CHECKING:
    import torch

#: the ``format`` tag of the checkpoints the trainer writes (``mlcore.engine.checkpoint``)
CHECKPOINT_FORMAT = "mlcore-checkpoint"
#: the containers other trainers wrap a state dict in, tried in this order
WRAPPERS = ("state_dict", "model_state_dict", "model")
DEFAULT_HINT = "another model or another number of labels?"


@dataclass(frozen=True)
class WeightLayout:
    """A way other code named a model's parameters, and how to read it as the model's own.

    name: what the layout is, for messages (``"official SSGRL"``).
    detect: a key prefix found only in files of this layout (``"resnet_101."``).
    rename: ordered ``(source prefix, target prefix)`` pairs; the first pair whose source
        prefix a key starts with renames it, a key matching none is kept as it is.
    drop: source key prefixes left out (parts of the file the model has no place for).
    """

    name: str
    detect: str
    rename: tuple[tuple[str, str], ...]
    drop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.detect:
            raise MlcoreError(f"weight layout {self.name!r}: detect must be a non-empty key prefix")
        if not all(isinstance(p, tuple) and len(p) == 2 for p in self.rename):
            raise MlcoreError(f"weight layout {self.name!r}: rename must be "
                              f"(source prefix, target prefix) pairs")

    def matches(self, state: Mapping[str, Any]) -> bool:
        """Whether ``state`` is in this layout: some key starts with ``detect``."""
        return any(k.startswith(self.detect) for k in state)

    def apply(self, state: Mapping[str, Any]) -> dict:
        """``state`` with its keys renamed and the ``drop`` prefixes left out."""
        out: dict = {}
        origin: dict[str, str] = {}
        for key, value in state.items():
            if self.drop and key.startswith(self.drop):
                continue
            new = next((dst + key[len(src):] for src, dst in self.rename if key.startswith(src)), key)
            if new in out:
                raise MlcoreError(f"weight layout {self.name!r} reads both {origin[new]!r} and {key!r} "
                                  f"as {new!r}")
            out[new], origin[new] = value, key
        return out


# -- reading -----------------------------------------------------------------------------

def read_weights(path: str | os.PathLike, *, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, by parameter name.

    ``.safetensors`` files are read with safetensors, anything else as a PyTorch file
    without running code from it. Wrappers are unwrapped and the ``module.`` prefix
    dropped (see :func:`state_dict_of`). ``what`` names the file in messages.
    """
    path = os.fspath(path)
    return state_dict_of(_read_file(path, what), path)


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The model weights in a loaded file (or any loaded object): an mlcore checkpoint's
    ``model``; the ``state_dict``/``model_state_dict``/``model`` of other trainers'
    checkpoints (the official SSGRL's ``{epoch, state_dict, best_mAP}``, timm's, the
    seed's); or a plain state dict. Entries that are not tensors are left out; the
    ``module.`` prefix of DataParallel/DDP saves is dropped when every key has it."""
    import torch

    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        obj = obj.get("model")
    elif isinstance(obj, Mapping):
        obj = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), Mapping)), obj)
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not state:
        raise MlcoreError(f"{source!r} holds no model weights "
                          f"(neither an mlcore checkpoint nor a state dict)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def safe_load(path: str | os.PathLike) -> Any:
    """Read a checkpoint or weights file without running code from it (tensors,
    containers, numbers and numpy scalars only); returns what the file holds."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MlcoreError(f"checkpoint {path!r} does not exist")
    return _torch_load(path)


def _read_file(path: str, what: str) -> Any:
    """What a torch or safetensors file holds; a missing file says what to put there."""
    if not os.path.isfile(path):
        raise MlcoreError(f"{what} file {path!r} does not exist; download the file (e.g. torchvision's "
                          f"resnet101-63fe2227.pth, a timm .safetensors, a paper's released checkpoint) "
                          f"and give its local path — nothing is downloaded")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise MlcoreError(f"{path!r} is not a readable safetensors file: {exc}") from None
    return _torch_load(path)


def _torch_load(path: str) -> Any:
    import torch

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


def _numpy_scalar_globals() -> list:
    """The numpy types a scalar such as the official SSGRL's ``best_mAP`` pickles as —
    plain data, let through ``weights_only`` loading, and nothing more."""
    import importlib

    import numpy as np

    out: list = [np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            out.append(importlib.import_module(mod).scalar)
            break
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                if hasattr(dtypes, n)]
    return out


# -- loading -----------------------------------------------------------------------------

def load_weights(module: torch.nn.Module, source: str | os.PathLike | Mapping[str, Any], *,
                 layouts: tuple[WeightLayout, ...] | None = None, ignore: tuple[str, ...] = (),
                 what: str = "checkpoint", hint: str = DEFAULT_HINT) -> WeightLayout | None:
    """Load a weights file (or a loaded state dict) into ``module``, strictly.

    ``layouts`` (default: the module's ``weight_layouts``): the first whose ``matches``
    is true renames the keys first. Then every key must fit (see :func:`load_state`;
    ``ignore`` prefixes are left out on both sides). Last, the module's
    ``weights_loaded(layout)``, when it has one, is told the layout read (None: its own).
    Returns that layout.
    """
    if isinstance(source, Mapping):
        name = "<state dict>"
        state = state_dict_of(source, name)
    else:
        name = os.fspath(source)
        state = state_dict_of(_read_file(name, what), name)
    return _load(module, state, name, layouts=layouts, ignore=ignore, what=what, hint=hint)


def load_weights_file(model: torch.nn.Module, path: str | os.PathLike) -> Any:
    """Load a whole model's weights from ``path`` (its layouts applied); returns what the
    file held, so a caller can read an mlcore checkpoint's other entries."""
    path = os.fspath(path)
    obj = _read_file(path, "checkpoint")
    _load(model, state_dict_of(obj, path), path)
    return obj


def _load(module: torch.nn.Module, state: dict, source: str, *,
          layouts: tuple[WeightLayout, ...] | None = None, ignore: tuple[str, ...] = (),
          what: str = "checkpoint", hint: str = DEFAULT_HINT) -> WeightLayout | None:
    if layouts is None:
        layouts = tuple(getattr(module, "weight_layouts", ()))
    used = next((layout for layout in layouts if layout.matches(state)), None)
    if used is not None:
        state = used.apply(state)
    _load_state(module, state, source, ignore=ignore, what=what, hint=hint,
                note=f"its keys were read as the {used.name} layout" if used is not None else "")
    loaded = getattr(module, "weights_loaded", None)
    if callable(loaded):
        loaded(used)
    return used


def load_state(module: torch.nn.Module, state: Mapping[str, Any], source: str, *,
               ignore: tuple[str, ...] = (), what: str = "checkpoint", hint: str = DEFAULT_HINT) -> None:
    """Load ``state`` into ``module``, naming each missing, unexpected or mis-shaped parameter.

    Keys starting with an ``ignore`` prefix are left out on both sides (e.g. ``fc.`` when a
    classification head is replaced); every other key must match exactly. ``source``
    names where the state came from, ``what`` what it is, ``hint`` a likely cause.
    """
    _load_state(module, state, source, ignore=ignore, what=what, hint=hint)


def _load_state(module: torch.nn.Module, state: Mapping[str, Any], source: str, *, ignore: tuple[str, ...],
                what: str, hint: str, note: str = "") -> None:
    ignore = tuple(ignore)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore)}
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
        if note:
            problems.append(f"({note})")
        raise MlcoreError(f"{what} {source!r} does not fit the model ({hint}):\n  " + "\n  ".join(problems))
    module.load_state_dict(state, strict=not ignore)


def _few(keys: list[str], n: int = 5) -> str:
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


__all__ = ["WeightLayout", "read_weights", "load_weights", "load_state", "state_dict_of", "safe_load",
           "CHECKPOINT_FORMAT"]
