"""The command line, run as a user runs it: in a subprocess."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import ROOT, make_dist, run_cli, tiny_config, write_yaml


def test_list_plugins_does_not_import_torch():
    code = ("import sys; from mlcore.cli.main import main; rc = main(['list-plugins', '--json']); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'numpy' not in sys.modules, 'numpy imported'; sys.exit(rc)")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"kind", "name", "summary", "distribution", "version"} <= set(rows[0])


def test_list_plugins_check_reports_broken_and_duplicate(tmp_path):
    make_dist(tmp_path, "mlcore-broken", {"mlcore.losses": {"explodes": "explodes_mod:plugin"}},
              {"explodes_mod": "raise RuntimeError('kaboom at import')\n"})
    make_dist(tmp_path, "mlcore-twin", {"mlcore.metrics": {"map": "twin_mod:plugin"}}, {"twin_mod": ""})
    env = {"PYTHONPATH": str(tmp_path)}
    proc = run_cli("list-plugins", "--check", "--json", env=env)
    assert proc.returncode == 1
    rows = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    assert rows[("loss", "explodes")]["status"] == "broken"
    assert "kaboom at import" in rows[("loss", "explodes")]["error"]
    assert rows[("metric", "map")]["status"] == "duplicate"
    assert "mlcore-twin" in rows[("metric", "map")]["error"]
    assert rows[("model", "resnet18")]["status"] == "ok" and rows[("loss", "bce")]["status"] == "ok"
    table = run_cli("list-plugins", "--check", env=env)
    assert table.returncode == 1 and "mlcore-broken" in table.stdout and "broken" in table.stdout
    plain = run_cli("list-plugins", env=env)
    assert plain.returncode == 0  # without --check, listing is not a verdict


def test_user_errors_exit_2_with_one_message(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    proc = run_cli("train", cfg, "--set", "model={name: resnet18, no_such_key: 1}")
    assert proc.returncode == 2
    assert "model.no_such_key: unknown key 'no_such_key'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written
    debug = run_cli("train", cfg, "--set", "train.batch_size=0", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "train.batch_size: must be > 0" in debug.stderr
    missing = run_cli("evaluate", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "does not exist" in missing.stderr
    bad_set = run_cli("train", cfg, "--set", "train.epochs")
    assert bad_set.returncode == 2 and "expected key.path=value" in bad_set.stderr
    resume = run_cli("train", cfg, "--resume")
    assert resume.returncode == 2 and "nothing to resume" in resume.stderr
    no_ckpt = run_cli("evaluate", cfg)
    assert no_ckpt.returncode == 2 and "best.pt" in no_ckpt.stderr and "train first" in no_ckpt.stderr
    off = run_cli("train", cfg, env={"MLCORE_DISABLE_PLUGINS": "model:resnet18"})
    assert off.returncode == 2 and "switched off by MLCORE_DISABLE_PLUGINS" in off.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run through the CLI, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_yaml(tmp / "tiny.yaml", tiny_config(tmp / "run"))
    proc = run_cli("train", cfg)
    assert proc.returncode == 0, proc.stderr
    return tmp, cfg, proc


def test_train_writes_the_run_folder(trained):
    tmp, cfg, proc = trained
    run = tmp / "run"
    assert "mAP" in proc.stdout and "AP per class:" in proc.stdout and "red_circle" in proc.stdout
    for f in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "result.json"):
        assert (run / f).is_file(), f
    assert list((run / "events").glob("events.out.tfevents*"))
    import yaml

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["model"]["name"] == "resnet18"


def test_evaluate_writes_result_scores_predictions(trained):
    tmp, cfg, _ = trained
    proc = run_cli("evaluate", cfg, "--out", tmp / "ev", "--topk", "2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp / "ev/result.json").read_text())
    keys = ["mAP", "ap_list"] + [f"{a}_{b}" for a in ("topk", "threshold") for b in ("cp", "cr", "cf1", "op", "or", "of1")]
    assert all(k in result for k in keys)
    assert result["num_images"] == 16 and len(result["ap_list"]) == 10 == len(result["classes"])
    scores = np.load(tmp / "ev/scores.npy")
    assert scores.shape == (16, 10) and scores.dtype == np.float32
    lines = (tmp / "ev/predictions.tsv").read_text().splitlines()
    assert len(lines) == 16
    path, labels = lines[0].split("\t")
    assert path.endswith(".jpg") and len(labels.split(",")) == 2
    best = np.argsort(-scores[0])[:2]
    assert labels.split(",") == [result["classes"][j] for j in best]
    default = run_cli("evaluate", cfg)
    assert default.returncode == 0 and (tmp / "run/eval/result.json").is_file()


def test_predict_prints_topk_and_rejects_non_images(trained):
    tmp, cfg, _ = trained
    import glob
    import os

    images = sorted(glob.glob(os.path.join(os.environ["MLCORE_CACHE"], "shapes", "*", "JPEGImages", "val_*.jpg")))[:2]
    proc = run_cli("predict", cfg, *images, "--topk", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(images[0])
    assert len(lines[0].split("\t")[1].split()) == 3
    text = tmp / "notes.jpg"
    text.write_text("not an image")
    bad = run_cli("predict", cfg, str(text))
    assert bad.returncode == 2 and "notes.jpg" in bad.stderr and "Traceback" not in bad.stderr


def test_python_dash_m_and_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("mlcore ")


def test_prepare_and_analyze(trained, tmp_path):
    tmp, cfg, _ = trained
    proc = run_cli("prepare", "shapes", "--set", "num_train=40", "num_val=16", "image_size=32", "seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "shapes: 10 classes" in proc.stdout and "rarest classes (train)" in proc.stdout
    assert [l.split()[:2] for l in proc.stdout.splitlines() if l.strip().startswith(("train", "val"))] == \
        [["train", "40"], ["val", "16"]]
    bad = run_cli("prepare", "voc2012", "--root", tmp_path / "nope")
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    out = run_cli("analyze", cfg, "--out", tmp_path / "an")
    assert out.returncode == 0, out.stderr
    assert "most frequent pairs:" in out.stdout
    from PIL import Image

    for name in ("cooccurrence.png", "label_frequency.png"):  # matplotlib figures: names, title, colour bar
        with Image.open(tmp_path / "an" / name) as im:
            assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 200


def test_evaluate_reports_ap_by_class_and_plots(trained):
    tmp, cfg, _ = trained
    proc = run_cli("evaluate", cfg, "--out", tmp / "ev2", "--plots")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp / "ev2/result.json").read_text())
    assert set(result["ap"]) == set(result["classes"]) and "mAP_noninterp" in result
    assert result["num_labels_without_positives"] == sum(a is None for a in result["ap_list"])
    for f in ("ap_per_class.png", "pr_curves.png"):
        assert (tmp / "ev2" / f).stat().st_size > 0
    table = proc.stdout.split("AP per class:")[1].split("wrote")[0].split()
    shown = [float(v) for v in table[1::2] if v != "n/a"]
    assert shown == sorted(shown, reverse=True)  # best first


def test_predict_folders_globs_json_and_threshold(trained, tmp_path):
    tmp, cfg, _ = trained
    import glob
    import os
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(glob.glob(os.path.join(os.environ["MLCORE_CACHE"], "shapes", "*", "JPEGImages", "val_00000[0-2].jpg")))[:3]:
        shutil.copy(p, folder)
    (folder / "notes.txt").write_text("not an image")
    proc = run_cli("predict", cfg, folder, "--json", "--threshold", "0.0", "--topk", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(len(r["topk"]) == 2 for r in rows)
    assert all(len(r["above_threshold"]) == 10 for r in rows)  # every probability is above 0
    assert "skipping" in proc.stderr and "notes.txt" in proc.stderr
    globbed = run_cli("predict", cfg, str(folder / "*.jpg"))
    assert globbed.returncode == 0 and len(globbed.stdout.splitlines()) == 3
    none = run_cli("predict", cfg, str(folder / "*.png"))
    assert none.returncode == 2 and "no file matches" in none.stderr
