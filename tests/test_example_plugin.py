"""A third-party plugin, registered only by its entry point, trains with no change to core."""
from __future__ import annotations

import json
import pytest

from conftest import ROOT, make_dist, run_cli, tiny_config, write_yaml

EXAMPLE = ROOT / "examples" / "mlcore-example-plugin"


def test_example_plugin_trains_through_its_entry_point(tmp_path):
    # "install" the example: a dist-info made from its own pyproject, its source on the path
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    make_dist(tmp_path / "site", meta["name"], meta["entry-points"], version=meta["version"])
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{EXAMPLE}"}

    rows = json.loads(run_cli("list-plugins", "--json", "--check", "--kind", "model", env=env).stdout)
    tiny = next(r for r in rows if r["name"] == "tinynet")
    assert tiny["distribution"] == "mlcore-example-plugin" and tiny["status"] == "ok"
    assert tiny["summary"] == "A small convolutional multi-label classifier."

    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run", model={"name": "tinynet", "width": 8}))
    proc = run_cli("train", cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: tinynet" in resolved and "width: 8" in resolved
    assert json.loads((tmp_path / "run" / "result.json").read_text())["mAP"] > 0

    bad = run_cli("train", cfg, "--set", "model.widht=4", env=env)
    assert bad.returncode == 2 and "did you mean 'width'" in bad.stderr
