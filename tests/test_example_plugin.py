"""The README's plugin guide, kept true: the example package is built as a wheel,
installed into a fresh folder, and its three plugins — a model, an optimizer and a
hook with state — are found through their entry points and used by name."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli, tiny_config, write_yaml

EXAMPLE = ROOT / "examples" / "mlcore-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example, built as a wheel (no network: the venv's setuptools) and installed."""
    tmp = tmp_path_factory.mktemp("example")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(pip + ["wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp / "dist"),
                                  str(EXAMPLE)], capture_output=True, text=True, cwd=tmp)
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list((tmp / "dist").glob("mlcore_example_plugin-*.whl"))
    assert len(wheels) == 1
    site = tmp / "site"
    inst = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheels[0])],
                          capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return {"PYTHONPATH": str(site)}


def test_the_example_wheel_offers_its_plugins(installed):
    rows = json.loads(run_cli("list-plugins", "--json", "--check", env=installed).stdout)
    mine = {(r["kind"], r["name"]): r for r in rows if r["distribution"] == "mlcore-example-plugin"}
    assert set(mine) == {("model", "tinynet"), ("optimizer", "nesterov_sgd"), ("hook", "loss_history")}
    assert all(r["status"] == "ok" for r in mine.values())
    assert mine[("model", "tinynet")]["summary"] == "A small convolutional multi-label classifier."


def test_the_example_trains_resumes_and_checks_its_keys(installed, tmp_path):
    cfg = tiny_config(tmp_path / "run", model={"name": "tinynet", "width": 8},
                      optimizer={"name": "nesterov_sgd", "lr": 0.02}, loss_history={"file": "losses.json"})
    cfg["train"].update(epochs=1)
    path = write_yaml(tmp_path / "c.yaml", cfg)
    proc = run_cli("train", path, env=installed)
    assert proc.returncode == 0, proc.stderr
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: tinynet" in resolved and "width: 8" in resolved and "name: nesterov_sgd" in resolved
    assert json.loads((tmp_path / "run" / "result.json").read_text())["mAP"] > 0
    # one more epoch on resume: the hook's saved history comes back, so both epochs are listed
    proc = run_cli("train", path, "--resume", "--set", "train.epochs=2", env=installed)
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads((tmp_path / "run" / "losses.json").read_text())) == ["1", "2"]

    bad = run_cli("train", path, "--set", "model.widht=4", "optimizer.momentun=0.5", env=installed)
    assert bad.returncode == 2 and "did you mean 'width'" in bad.stderr and "did you mean 'momentum'" in bad.stderr
