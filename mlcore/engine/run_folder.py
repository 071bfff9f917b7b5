"""The run folder (``output_dir``) and the files it holds besides checkpoints.

``config.yaml`` (the resolved config), ``environment.json`` (versions, device),
``metrics.jsonl`` (one line per validation) and ``checkpoints/``. Only the main process
writes here (under torchrun every rank holds the same state), and only while it holds
``.lock`` (:mod:`mlcore.engine.run_lock`): one run per folder.

A folder holds a run once it has ``config.yaml``, ``metrics.jsonl`` or a checkpoint; a new
run there is refused (results of two runs would mix) unless it resumes the run or was
asked to overwrite it, which removes only the files runs write (:data:`RUN_FILES`) — a
file a user put beside them (the demo's ``label_vectors.npy``) stays.

A config without ``output_dir`` trains into a new numbered folder per run,
``runs/<config name>/version_<n>`` (as Lightning does): :func:`new_version` claims the next
number, :func:`latest_run` finds the newest (what evaluate, predict and ``--resume`` use).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

from ..errors import MlcoreError
from ..files import json_safe, write_text
from .run_lock import RunLock

#: what runs (train, evaluate) write in a run folder: all that ``--overwrite`` removes
RUN_FILES = ("config.yaml", "environment.json", "metrics.jsonl", "result.json", "checkpoints", "events",
             "eval")
VERSION_PREFIX = "version_"


class RunFolder:
    def __init__(self, output_dir: str | Path):
        self.root = Path(output_dir)
        self.checkpoints = self.root / "checkpoints"
        self.metrics_file = self.root / "metrics.jsonl"
        self.lock = RunLock(self.root)  # taken by the trainer's main process before anything is written

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def check_usable(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise MlcoreError(f"output_dir {str(self.root)!r} is a file, not a folder")

    def holds_run(self) -> bool:
        """True when a run wrote here: ``config.yaml``, ``metrics.jsonl`` or a checkpoint."""
        return holds_run(self.root)

    def clear(self) -> list[str]:
        """Remove the files of the run held here (:data:`RUN_FILES`), nothing else; the
        names removed. The caller holds the run lock, so no running run loses its files.
        Links are removed as links: nothing outside the folder is touched."""
        if not self.lock.held:
            raise RuntimeError("RunFolder.clear() needs the run lock")
        removed = []
        for name in RUN_FILES:
            p = self.root / name
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
                else:
                    continue
            except OSError as exc:
                raise MlcoreError(f"--overwrite: cannot remove {str(p)!r}: {exc.strerror or exc}") from exc
            removed.append(name)
        return removed

    def prepare(self, config_yaml: str) -> None:
        """Create the folder, drop temporary files of a process killed mid-write, and
        write ``config.yaml`` and ``environment.json``."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoints.glob(".*.tmp-*"):
                stale.unlink(missing_ok=True)
            write_text(self.root / "config.yaml", config_yaml)
            write_text(self.root / "environment.json", environment())
        except OSError as exc:
            raise MlcoreError(f"cannot write to output_dir {str(self.root)!r}: {exc.strerror or exc}") from exc

    def log_metrics(self, row: dict) -> None:
        """Append one evaluation to ``metrics.jsonl`` (non-finite numbers as null)."""
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in row.items()}) + "\n")

    def write_result(self, summary: dict, classes: list[str]) -> dict | None:
        """``result.json``: the best epoch's validation metrics (``fit``'s summary less its
        bookkeeping), with ``ap`` by class name and ``classes`` as evaluate writes them.
        Nothing when no epoch was validated (no ``mAP``). Written by ``fit`` itself, so the
        CLI and the Python API leave the same run folder."""
        metrics = {k: v for k, v in summary.items() if k not in ("best_score", "monitor", "reason")}
        if "mAP" not in metrics:
            return None
        result = {**metrics, "ap": dict(zip(classes, metrics.get("ap_list") or [])), "classes": list(classes)}
        try:
            text = json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n"
            write_text(self.root / "result.json", text)
        except OSError as exc:
            raise MlcoreError(f"cannot write {str(self.root / 'result.json')!r}: {exc.strerror or exc}") from exc
        return result

    def drop_metrics_after(self, step: int, epoch: int | None = None) -> None:
        """On resume, forget evaluations logged after the checkpoint (they will be redone):
        those of a later step, or of an epoch after ``epoch`` (the checkpoint's completed
        epochs: a ``last.pt`` written before its epoch's validation redoes that one)."""
        if self.metrics_file.is_file():
            rows = [(line, json.loads(line)) for line in self.metrics_file.read_text().splitlines() if line]
            keep = [line for line, row in rows
                    if row["step"] <= step and (epoch is None or row.get("epoch", 0) <= epoch)]
            write_text(self.metrics_file, "".join(line + "\n" for line in keep))


def holds_run(folder: str | Path) -> bool:
    """True when ``folder`` holds a run's ``config.yaml``, ``metrics.jsonl`` or a checkpoint."""
    root = Path(folder)
    if (root / "config.yaml").is_file() or (root / "metrics.jsonl").is_file():
        return True
    ckpts = root / "checkpoints"
    return ckpts.is_dir() and any(p.suffix == ".pt" for p in ckpts.iterdir())


def versions(root: str | Path) -> list[tuple[int, Path]]:
    """The numbered run folders ``root/version_<n>``, by number."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = re.fullmatch(re.escape(VERSION_PREFIX) + r"(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_run(root: str | Path) -> Path:
    """The run of a config without ``output_dir``: the highest ``root/version_<n>``;
    ``root`` itself when it holds a run and has no versions (a run from before numbered
    folders); else ``root/version_0`` (where the first run will go)."""
    root = Path(root)
    found = versions(root)
    if found:
        return found[-1][1]
    if holds_run(root):
        return root
    return root / f"{VERSION_PREFIX}0"


def new_version(root: str | Path) -> Path:
    """Create and return the next ``root/version_<n>`` (one past the highest). Claimed
    with ``mkdir``, which only one process can win: two runs started together get two
    folders."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlcoreError(f"cannot create the run folder under {str(root)!r}: {exc.strerror or exc}") from exc
    found = versions(root)
    n = found[-1][0] + 1 if found else 0
    while True:
        p = root / f"{VERSION_PREFIX}{n}"
        try:
            os.mkdir(p)
            return p
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise MlcoreError(f"cannot create the run folder {str(p)!r}: {exc.strerror or exc}") from exc


def environment() -> str:
    """Versions and the device, so a run folder says what produced it."""
    import platform
    from importlib import metadata

    import torch

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cuda = torch.cuda.is_available()
    return json.dumps({
        "python": platform.python_version(), "platform": platform.platform(),
        **{d: version(d) for d in ("mlcore", "torch", "torchvision", "timm", "numpy")},
        "cuda": torch.version.cuda if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "threads": torch.get_num_threads(),
    }, indent=1) + "\n"
