"""What a resumed run may change of the config it was started with.

``--resume`` continues a run exactly (same batches, augmentation, RNG states), which only
holds while everything that shapes training stays as it was. The run's own
``output_dir/config.yaml`` is the reference: the config a resume is given (a file plus
``--set``, or the Experiment's) is compared with it key by key. Keys that do not touch the
trained weights may change mid-run (:data:`RESUMABLE_KEYS`, and every hook section:
logging, progress, early stopping); the resume says what changed. Any other difference
(batch size, data, model, loss, optimizer, schedule, seed…) would make the run no longer
the run it was, and is refused unless forced (``--force`` / ``fit(force=True)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config_check import CORE_SECTIONS
from ..errors import MlcoreError

#: keys that may change when a run resumes: how long it trains, what and how often it logs
#: and checkpoints, how its data is read (not what), and how a bad image is treated
RESUMABLE_KEYS = (
    "train.epochs",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_batch_size",
    "train.num_workers",
    "train.dist_timeout",
    "data.on_bad_image",
    "output_dir",
)

_ABSENT = object()


@dataclass
class Change:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        def show(v: Any) -> str:
            if v is _ABSENT:
                return "(absent)"
            return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").removesuffix(" ...")
        return f"{self.key}: {show(self.old)} -> {show(self.new)}"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested mappings; lists and scalars are leaves."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def may_change(key: str) -> bool:
    """True when ``key`` may differ between a run and its resume."""
    section = key.split(".", 1)[0]
    if section not in CORE_SECTIONS:  # a hook plugin's section (or a hook switched on or off)
        return True
    return key in RESUMABLE_KEYS


def compare(saved: dict, given: dict) -> tuple[list[Change], list[Change]]:
    """The differences between a run's saved config and the one it resumes with:
    ``(allowed, breaking)``."""
    a, b = _flatten(saved), _flatten(given)
    allowed, breaking = [], []
    for key in list(a) + [k for k in b if k not in a]:
        if key == "output_dir":  # the folder being resumed, however it is written (relative, absolute)
            continue
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old == new or (old is _ABSENT and new is None) or (old is None and new is _ABSENT):  # absent ~ null
            continue
        (allowed if may_change(key) else breaking).append(Change(key, old, new))
    return allowed, breaking


def _with_defaults(saved: dict) -> dict:
    """The saved config as this version resolves it: keys added since the run started take
    their defaults (which cannot have shaped the run), so they are no change. A saved
    config this version cannot resolve is compared as it is."""
    from ..config import load_config

    try:
        data = dict(saved)
        data["output_dir"] = data.get("output_dir") or "."  # never a new numbered folder here
        out = load_config(data).resolved()
    except Exception:  # an old or foreign config: compare what is written
        return saved
    out["output_dir"] = saved.get("output_dir")
    return yaml.safe_load(yaml.safe_dump(out, sort_keys=False))


def read_saved_config(folder: Path) -> dict | None:
    """The run's ``config.yaml`` as written by its start (None when it has none)."""
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MlcoreError(f"cannot resume: the run's config {str(path)!r} cannot be read ({exc}); it is what "
                          f"a resume is checked against") from exc
    return data if isinstance(data, dict) else None


def check_resume_config(folder: Path, resolved: dict, *, force: bool, how: dict[str, str]) -> list[Change]:
    """Compare the run's saved config with ``resolved`` (the config resuming it). Raise
    :class:`MlcoreError` listing the keys that break exactness unless ``force``; return
    every change (allowed ones, and forced ones). ``how``: the words of the messages
    (``resume``: the command that resumes with the run's own config, ``force``: how to
    force)."""
    saved = read_saved_config(folder)
    if saved is None:
        return []
    saved = _with_defaults(saved)  # a run started by an older mlcore lacks keys added since
    given = yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))  # the round trip config.yaml makes
    allowed, breaking = compare(saved, given)
    if breaking and not force:
        listing = "\n".join(f"  {c}" for c in breaking)
        raise MlcoreError(
            f"cannot resume {str(folder)!r} with this config: it changes what the run was trained with, so "
            f"the run would not continue exactly:\n{listing}\n"
            f"On resume only {', '.join(RESUMABLE_KEYS)} and hook sections may change. Resume with the run's "
            f"own config: {how['resume']}; or {how['force']} to continue with the changes anyway "
            f"(the run is then no longer exact)")
    return allowed + breaking
