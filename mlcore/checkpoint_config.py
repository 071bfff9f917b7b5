"""The experiment a checkpoint was trained as: what ``evaluate``, ``calibrate``,
``predict`` and ``export`` run.

A checkpoint mlcore wrote carries its run's resolved config, its classes (in output order)
and, for vocabularies up to :data:`LABEL_INFO_MAX_CLASSES`, the train split's label
statistics. Those are the truth for how its scores are made, so:

* the ``model`` section and the input settings of ``data`` (:data:`INPUT_KEYS`: sizes,
  mean/std) come from the checkpoint's config, not from the config given — a model
  trained at 40 px is scored at 40 px — unless ``--set`` names them on the command line
  (the user's explicit word wins); a difference is reported on stderr;
* files the model section names only to initialize weights (``weights``,
  ``weights_classes``, at any depth) are not read: the checkpoint replaces every weight;
* with ``need_data=False`` (``predict``, ``export``) the classes and label statistics come
  from the checkpoint, so no dataset is read at all: a config and a checkpoint ship a
  model (models built from word vectors still read the file their config names);
* the classes of the checkpoint and of the dataset (``need_data=True``) are compared by
  name when the weights are loaded (:meth:`mlcore.Experiment.load_checkpoint`).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import MlcoreError

#: the ``data`` keys that decide what the model sees: taken from the checkpoint's config
INPUT_KEYS = ("scale_size", "crop_size", "mean", "std")
#: checkpoints carry the train split's label statistics up to this many classes (C×C counts)
LABEL_INFO_MAX_CLASSES = 1024  # 4 MB of int32 co-occurrences at most
#: keys of a model section that only name initial weights (the checkpoint replaces them)
INIT_WEIGHT_KEYS = ("weights", "weights_classes")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """An mlcore checkpoint's contents (verified), or ``{}`` for a weights file from elsewhere."""
    from .weights import safe_load

    held = safe_load(path)
    if isinstance(held, dict) and isinstance(held.get("classes"), list) and "model" in held:
        return held
    return {}


def label_info_entry(info: Any) -> dict | None:
    """What a checkpoint stores of the train split's ``LabelInfo`` (None above the size limit)."""
    import numpy as np
    import torch

    if info is None or len(info.classes) > LABEL_INFO_MAX_CLASSES:
        return None
    return {"counts": np.asarray(info.counts, dtype=np.int64).tolist(),
            "cooccurrence": torch.from_numpy(np.ascontiguousarray(info.cooccurrence, dtype=np.int32)),
            "num_images": int(info.num_images)}


def label_info_of(held: dict) -> Any:
    """The ``LabelInfo`` a checkpoint stored, or None."""
    import numpy as np

    from .labels import LabelInfo

    entry = held.get("label_info")
    if not isinstance(entry, dict):
        return None
    co = entry.get("cooccurrence")
    co = co.numpy() if hasattr(co, "numpy") else np.asarray(co)
    return LabelInfo(list(held["classes"]), np.asarray(entry["counts"], dtype=np.int64), co.astype(np.int64),
                     int(entry["num_images"]))


def _named_by(overrides: Iterable[str], key: str) -> bool:
    """Whether a ``--set`` item sets ``key`` (``data.crop_size``) or a section above it."""
    for item in overrides:
        name = item.partition("=")[0].strip()
        if name == key or key.startswith(name + ".") or name.startswith(key + "."):
            return True
    return False


def _without_init_weights(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: (None if k in INIT_WEIGHT_KEYS else _without_init_weights(v)) for k, v in section.items()}
    return section


def experiment_for_checkpoint(config: str | os.PathLike | dict, overrides: Iterable[str] = (),
                              checkpoint: str | os.PathLike | None = None, *, need_data: bool = True,
                              quiet: bool = False) -> tuple[Any, Path, dict]:
    """``(experiment, checkpoint path, checkpoint contents)`` for scoring with ``checkpoint``
    (default: the run's ``best.pt``), set up as the module describes. Nothing is loaded into
    the model yet: call ``experiment.load_checkpoint(path, contents=contents)``."""
    from .config import load_config
    from .experiment import Experiment

    overrides = list(overrides)
    cfg = load_config(config, overrides)
    path = Path(checkpoint) if checkpoint else Experiment(cfg).checkpoint_path()  # building nothing yet
    if not path.is_file():
        hint = "" if checkpoint else " (train first, or pass --checkpoint)"
        raise MlcoreError(f"checkpoint {str(path)!r} does not exist{hint}")
    held = read_checkpoint(path)
    saved = held.get("config")
    if isinstance(saved, dict):
        data = cfg.resolved()
        changed = []
        saved_data = saved.get("data") or {}
        for key in INPUT_KEYS:
            if key in saved_data and not _named_by(overrides, f"data.{key}"):
                if data["data"].get(key) != saved_data[key]:
                    changed.append(f"data.{key} {saved_data[key]!r} (the config says {data['data'].get(key)!r})")
                data["data"][key] = saved_data[key]
        if isinstance(saved.get("model"), dict) and not _named_by(overrides, "model"):
            mine, theirs = _without_init_weights(data["model"]), _without_init_weights(saved["model"])
            if mine != theirs:
                changed.append(f"model {theirs.get('name')!r} as trained (the config's model section differs)")
            data["model"] = theirs
        else:
            data["model"] = _without_init_weights(data["model"])
        data["output_dir"] = cfg.output_dir  # the numbered run folder already resolved
        if changed and not quiet:
            print(f"mlcore: using the checkpoint's settings: {'; '.join(changed)}", file=sys.stderr)
        cfg = load_config(data)  # the --set items are already in it
    exp = Experiment(cfg)
    if not need_data and held:
        exp.__dict__["classes"] = list(held["classes"])  # the checkpoint's: no dataset is read
        info = label_info_of(held)
        if info is not None:
            exp.__dict__["label_info"] = info
    return exp, path, held


def from_checkpoint(config: str | os.PathLike | dict, checkpoint: str | os.PathLike | None = None, *,
                    overrides: Iterable[str] = (), need_data: bool = True) -> Any:
    """An :class:`~mlcore.Experiment` holding ``checkpoint``'s weights (default: the run's
    ``best.pt``), set up as that checkpoint was trained — its model section and input
    sizes/normalization, its classes compared by name — exactly as ``mlcore evaluate`` and
    ``predict`` do (``mlcore.build(config)`` takes the config as written instead).
    ``need_data=False``: the classes come from the checkpoint and no dataset is read
    (for ``predict``)."""
    exp, path, held = experiment_for_checkpoint(config, overrides, checkpoint, need_data=need_data)
    exp.load_checkpoint(path, contents=held)
    return exp


def differences_from(held: dict, config: Any) -> list[str]:
    """What ``config`` (a Config) sets otherwise than the checkpoint was trained with: the
    input keys of ``data`` and the model section (initial-weight files left out)."""
    saved = held.get("config") if isinstance(held, dict) else None
    if not isinstance(saved, dict):
        return []
    mine = config.resolved()
    out = [f"data.{k} {saved['data'][k]!r} (this config: {mine['data'].get(k)!r})" for k in INPUT_KEYS
           if k in (saved.get("data") or {}) and saved["data"][k] != mine["data"].get(k)]
    if isinstance(saved.get("model"), dict) and \
            _without_init_weights(saved["model"]) != _without_init_weights(mine["model"]):
        out.append(f"model {saved['model'].get('name')!r} (this config's model section differs)")
    return out


__all__ = ["experiment_for_checkpoint", "from_checkpoint", "differences_from", "read_checkpoint",
           "label_info_entry", "label_info_of", "INPUT_KEYS"]
