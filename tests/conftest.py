"""Shared test helpers: a private cache, tiny configs, fake distributions, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# generated data goes to a cache of the test session's own, unless CI gave one
os.environ.setdefault("MLCORE_CACHE", tempfile.mkdtemp(prefix="mlcore-test-cache-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers on a 2-core machine: one thread each (and
    # for the processes they start), not two each fighting over the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def tiny_config(output_dir, **over) -> dict:
    """A config that trains in about a second: 32 px shapes, ResNet-18, two epochs."""
    cfg = {
        "dataset": {"name": "shapes", "num_train": 40, "num_val": 16, "image_size": 32, "seed": 3},
        "data": {"scale_size": 32, "crop_size": 32, "train_crops": [28, 32]},
        "model": {"name": "resnet18"},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 8, "num_workers": 0, "seed": 0, "log_every": 2},
        "progress": False,
        "output_dir": str(output_dir),
    }
    cfg.update(over)
    return cfg


def write_yaml(path: Path, data) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args, env=None, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    """``python -m mlcore ARGS`` in a subprocess; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlcore", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def run_main(capsys, *argv):
    """``mlcore ARGV`` in this process (torch imported once): ``(exit code, stdout, stderr)``."""
    from mlcore.cli.main import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_dist(where: Path, name: str, entry_points: dict[str, dict[str, str]],
              modules: dict[str, str] | None = None, version: str = "1.0") -> Path:
    """A fake installed distribution: a ``.dist-info`` folder and its modules under ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    info = where / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, src in (modules or {}).items():
        path = where / (mod.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
    return where


@pytest.fixture
def tiny(tmp_path):
    """A tiny config (dict) writing into a temporary run folder."""
    return tiny_config(tmp_path / "run")
