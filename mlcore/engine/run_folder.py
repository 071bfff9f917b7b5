"""The run folder (``output_dir``) and the files it holds besides checkpoints.

``config.yaml`` (the resolved config), ``environment.json`` (versions, device),
``metrics.jsonl`` (one line per validation) and ``checkpoints/``. Only the main process
writes here (under torchrun every rank holds the same state), and only while it holds
``.lock`` (:mod:`mlcore.engine.run_lock`): one run per folder.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import MlcoreError
from ..files import write_text
from .run_lock import RunLock


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

    def drop_metrics_after(self, step: int) -> None:
        """On resume, forget evaluations logged after the checkpoint (they will be redone)."""
        if self.metrics_file.is_file():
            keep = [line for line in self.metrics_file.read_text().splitlines()
                    if line and json.loads(line)["step"] <= step]
            write_text(self.metrics_file, "".join(line + "\n" for line in keep))


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
