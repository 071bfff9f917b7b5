"""``thresholds.json``: the per-class thresholds ``mlcore calibrate`` writes beside a
checkpoint, read back for ``evaluate``, ``predict --threshold calibrated`` and ``export``.

Reading checks everything a wrong file would silently get wrong, with one error naming the
file: JSON that does not parse, a missing key, a threshold per class that is not a finite
number, classes that are not the checkpoint's (names are compared: the same names in
another order are reordered, other names are an error listing the difference), and a
checkpoint other than the one calibrated (its sha256, when both are known). The rule is
the one ``calibrate`` chose with: a label is predicted when its score is ``>= threshold``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MlcoreError

FILE_NAME = "thresholds.json"


@dataclass(frozen=True)
class Thresholds:
    """One threshold per class (``thresholds[j]`` for ``classes[j]``), and where they
    came from: the ``objective``, the ``split`` they were fitted on, the checkpoint's
    ``checkpoint_sha256`` (None when it had no mlcore checksum), ``step`` and ``epoch``."""

    classes: list[str]
    thresholds: np.ndarray
    objective: str
    split: str
    path: str
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    step: int | None = None
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Boolean N×C decisions: ``scores >= thresholds`` (NaN scores decide nothing)."""
        return np.asarray(scores) >= self.thresholds[None, :]


def path_beside(checkpoint: str | os.PathLike) -> Path:
    """Where ``calibrate`` writes the thresholds of ``checkpoint``: beside it."""
    return Path(checkpoint).parent / FILE_NAME


def read_thresholds(path: str | os.PathLike, *, classes: list[str] | None = None,
                    checkpoint_sha256: str | None = None) -> Thresholds:
    """Read and check ``path``. With ``classes`` (the checkpoint's, in its output order),
    the thresholds come back in that order; with ``checkpoint_sha256`` (the checksum of
    the checkpoint in use), a file calibrated for another checkpoint is refused."""
    where = str(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise MlcoreError(f"no thresholds file {where!r}: run `mlcore calibrate` first "
                          f"(it writes thresholds.json beside the checkpoint)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise MlcoreError(f"cannot read thresholds file {where!r}: {reason}") from exc
    except json.JSONDecodeError as exc:
        raise MlcoreError(f"thresholds file {where!r} is not valid JSON (line {exc.lineno}): "
                          f"{exc.msg}") from None
    if not isinstance(data, dict):
        raise MlcoreError(f"thresholds file {where!r} must hold a JSON object, not {type(data).__name__}")
    missing = [k for k in ("classes", "thresholds") if k not in data]
    if missing:
        raise MlcoreError(f"thresholds file {where!r} lacks {', '.join(map(repr, missing))}: "
                          f"not a file written by `mlcore calibrate`")
    names, values = data["classes"], data["thresholds"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise MlcoreError(f"thresholds file {where!r}: 'classes' must be a list of names")
    if len(set(names)) != len(names):
        raise MlcoreError(f"thresholds file {where!r}: 'classes' names a class twice")
    if not isinstance(values, list) or len(values) != len(names):
        raise MlcoreError(f"thresholds file {where!r}: 'thresholds' must be a list of {len(names)} numbers "
                          f"(one per class)")
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
            shown = repr(v) if len(repr(v)) <= 24 else repr(v)[:20] + "…"
            raise MlcoreError(f"thresholds file {where!r}: the threshold of class {names[j]!r} is {shown}, "
                              f"not a finite number")
    thr = np.asarray(values, dtype=np.float64)
    if classes is not None:
        classes = list(classes)
        if names != classes:
            if sorted(names) != sorted(classes):
                raise MlcoreError(f"thresholds file {where!r} was calibrated for other classes than the "
                                  f"checkpoint's: {_difference(names, classes)}; "
                                  f"run `mlcore calibrate` again")
            order = {c: j for j, c in enumerate(names)}
            thr = thr[[order[c] for c in classes]]
            names = classes
    sha = data.get("checkpoint_sha256")
    if checkpoint_sha256 is not None and isinstance(sha, str) and sha != checkpoint_sha256:
        raise MlcoreError(f"thresholds file {where!r} was calibrated for another checkpoint "
                          f"({data.get('checkpoint')!r}, sha256 {sha[:12]}…, not {checkpoint_sha256[:12]}…); "
                          f"run `mlcore calibrate` on this one")
    return Thresholds(classes=list(names), thresholds=thr, objective=str(data.get("objective", "?")),
                      split=str(data.get("split", "?")), path=where, checkpoint=data.get("checkpoint"),
                      checkpoint_sha256=sha if isinstance(sha, str) else None,
                      step=data.get("step") if isinstance(data.get("step"), int) else None,
                      epoch=data.get("epoch") if isinstance(data.get("epoch"), int) else None,
                      extra={k: v for k, v in data.items() if k not in {"classes", "thresholds"}})


def _finite(v: int | float) -> bool:
    """Finite as a double: JSON's NaN/Infinity are not, nor an integer too large for a
    double (``math.isfinite`` would raise OverflowError on it)."""
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _difference(have: list[str], want: list[str]) -> str:
    if len(have) != len(want):
        return f"{len(have)} classes in the file, {len(want)} in the checkpoint"
    only_file = [c for c in have if c not in set(want)][:5]
    only_ckpt = [c for c in want if c not in set(have)][:5]
    return (f"the file's {', '.join(map(repr, only_file))} against the checkpoint's "
            f"{', '.join(map(repr, only_ckpt))}")


__all__ = ["FILE_NAME", "Thresholds", "path_beside", "read_thresholds"]
