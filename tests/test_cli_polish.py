"""The small things a careful user meets around the CLI (issue 15): ``list-plugins --keys``,
the ``--set`` messages (the mapping form after a plugin switch, typos blamed on ``--set``,
"did you mean" ignoring case), ``predict``'s argument checks and EMA weights, train's
console (``ema_mAP``, rounded numbers), ``evaluate --checkpoint X`` writing beside X, and
TensorBoard's captions with the true labels. Each through the CLI or API as a user calls it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_main, tiny_config, write_yaml


# -- list-plugins --keys --------------------------------------------------------------------
def test_keys_show_types_defaults_and_required(capsys):
    for argv in (["--keys", "model/ssgrl"], ["--keys", "ssgrl", "--kind", "model"], ["--keys", "model:ssgrl"]):
        code, out, err = run_main(capsys, "list-plugins", *argv)
        assert code == 0, err
        lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
        assert "ssgrl" in out.splitlines()[0]
        assert "string" in lines["embeddings"] and "required" in lines["embeddings"]
        assert "integer" in lines["hidden_dim"] and "1024" in lines["hidden_dim"]
        assert "'paper', 'official'" in lines["reset_gate"] and "paper" in lines["reset_gate"]
        assert "backbone" in lines["backbone"] and "resnet101" in lines["backbone"]


def test_keys_json_docs_and_framework_keys(capsys):
    code, out, _ = run_main(capsys, "list-plugins", "--keys", "optimizer/sgd", "--json")
    assert code == 0
    rows = json.loads(out)
    by_key = {r["key"]: r for r in rows}
    assert {"lr", "backbone_lr_mult"} <= by_key.keys()  # the plugin's and the framework's keys
    assert by_key["backbone_lr_mult"]["section"] == "framework"
    assert all({"kind", "name", "key", "type", "default", "required", "doc"} <= r.keys() for r in rows)
    code, out, _ = run_main(capsys, "list-plugins", "--keys", "train", "--json")  # a core section
    by_key = {r["key"]: r for r in json.loads(out)}
    assert "moving average" in by_key["ema"]["doc"] and by_key["epochs"]["default"] == 20


def test_keys_docs_from_field_metadata_and_attribute_docstrings(capsys):
    import dataclasses

    import mlcore

    @dataclasses.dataclass
    class Cfg:
        depth: int = dataclasses.field(default=3, metadata={"doc": "how many blocks"})
        width: float = 1.0
        """channels multiplier"""

    mlcore.register("model", "polish_doc_model", mlcore.Plugin("model", "polish_doc_model", "docs", Cfg,
                                                               lambda cfg: None), replace=True)
    code, out, _ = run_main(capsys, "list-plugins", "--keys", "polish_doc_model")
    assert code == 0
    assert re.search(r"depth\s+integer\s+3\s+how many blocks", out)
    assert re.search(r"width\s+number\s+1.0\s+channels multiplier", out)


def test_keys_unknown_name_is_exit_2_with_a_suggestion(capsys):
    code, _, err = run_main(capsys, "list-plugins", "--keys", "ssgr")
    assert code == 2 and "did you mean 'ssgrl'" in err and "Traceback" not in err


def test_keys_do_not_import_torch():
    code = ("import sys; from mlcore.cli.main import main; rc = main(['list-plugins', '--keys', 'model/ssgrl']);"
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


# -- --set messages ---------------------------------------------------------------------------
def test_switching_the_optimizer_by_set_suggests_the_mapping_form(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run")
    cfg["optimizer"] = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99]}
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    code, _, err = run_main(capsys, "check", path, "--set", "optimizer.name=sgd")
    assert code == 2
    assert "unknown key 'betas'" in err
    assert "--set 'optimizer={name: sgd" in err and "betas" in err


def test_did_you_mean_ignores_case(tmp_path, capsys):
    path = write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path / "run"))
    code, _, err = run_main(capsys, "check", path, "--set", "loss=ASL")
    assert code == 2 and "did you mean 'asl'" in err
    code, _, err = run_main(capsys, "check", path, "--set", "TRAIN.epochs=2")
    assert code == 2 and "did you mean 'train'" in err
    from mlcore.errors import did_you_mean

    assert did_you_mean("Resnet18", ["resnet18", "resnet50"]) == " (did you mean 'resnet18'?)"


def test_a_typo_in_a_set_key_is_blamed_on_the_set(tmp_path, capsys):
    path = write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path / "run"))
    code, _, err = run_main(capsys, "check", path, "--set", "trian.epochs=2")
    assert code == 2
    line = next(ln for ln in err.splitlines() if "trian" in ln)
    assert "--set: trian" in line and str(path) not in line, line


# -- predict's arguments ----------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [(["--topk", "0"], "--topk"), (["--topk", "-2"], "--topk"),
                                         (["--threshold", "1.5"], "--threshold"),
                                         (["--threshold", "-0.1"], "--threshold"),
                                         (["--threshold", "nan"], "--threshold")])
def test_predict_refuses_bad_topk_and_threshold(tmp_path, capsys, args, says):
    from mlcore.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path / "cfg.yaml"), "x.jpg", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err and "usage:" in err


# -- a run with EMA: train's console, predict and evaluate on it -------------------------------
@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """A tiny run trained one epoch with an EMA of the weights, and its console output."""
    tmp = tmp_path_factory.mktemp("ema")
    cfg = tiny_config(tmp / "run")
    cfg["train"].update(epochs=1, ema=0.5)
    path = write_yaml(tmp / "cfg.yaml", cfg)
    from mlcore.cli.main import main

    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", str(path)])
    assert code == 0, err.getvalue()
    return path, tmp / "run", out.getvalue()


def test_train_console_shows_ema_map_and_rounds(ema_run):
    _, _, out = ema_run
    assert re.search(r"\bema_mAP \d\.\d{4}\b", out), out
    best = next(ln for ln in out.splitlines() if "best epoch" in ln)
    assert re.search(r"\(mAP \d\.\d{4}\)", best), best
    for number in re.findall(r"\d+\.\d+", out):
        assert len(number.split(".")[1]) <= 4, (number, out)


def test_predict_uses_the_ema_weights_and_says_so(ema_run, capsys):
    import torch

    import mlcore

    path, run, _ = ema_run
    exp = mlcore.build(path)
    image = exp.val_set.images[0]
    code, out, err = run_main(capsys, "predict", path, image, "--json", "--topk", "10")
    assert code == 0, err
    assert "EMA" in err
    got = {e["label"]: e["probability"] for e in json.loads(out)["topk"]}
    held = exp.load_checkpoint(run / "checkpoints" / "best.pt")
    exp.load_state(held["ema"], "ema")
    from mlcore.data.images import read_image

    probs = exp.predict(torch.stack([exp.eval_transform(read_image(image))]))[0]
    for c, p in zip(exp.classes, probs.tolist()):
        assert got[c] == pytest.approx(p, abs=1e-5)


def test_evaluate_a_given_checkpoint_writes_beside_it(ema_run, capsys):
    path, run, _ = ema_run
    code, out, err = run_main(capsys, "evaluate", path)  # the run's best.pt: the run's eval/
    assert code == 0, err
    assert (run / "eval" / "result.json").is_file()
    before = (run / "eval" / "result.json").read_text()
    ckpt = run / "checkpoints" / "last.pt"
    code, out, err = run_main(capsys, "evaluate", path, "--checkpoint", ckpt)
    assert code == 0, err
    beside = ckpt.parent / "eval-last"
    assert json.loads((beside / "result.json").read_text())["checkpoint"] == str(ckpt)
    assert str(beside) in out
    assert (run / "eval" / "result.json").read_text() == before  # the run's eval/ untouched
    for number in re.findall(r"\d+\.\d+", out.replace(str(run), "")):
        assert len(number.split(".")[1]) <= 4, (number, out)


# -- TensorBoard's captions ---------------------------------------------------------------------
def test_tensorboard_captions_show_true_labels(tmp_path, monkeypatch):
    import numpy as np
    import torch

    import mlcore
    from mlcore_builtins.hooks import tensorboard_logger as tb

    exp = mlcore.build(tiny_config(tmp_path / "run"))
    drawn: list[str] = []
    from PIL import ImageDraw

    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *a, **k):
        drawn.append(text)
        return real(self, xy, text, *a, **k)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    trainer = type("T", (), {"experiment": exp})()
    scores = torch.rand(len(exp.val_set), len(exp.classes))
    images = tb.TensorBoardLogger._captioned(trainer, scores, n=2)
    assert images.shape[0] == 2
    targets = np.asarray(exp.val_set.targets)
    for i in range(2):
        truth = [exp.classes[j] for j in np.flatnonzero(targets[i] == 1)]
        text = "\n".join(drawn)
        assert all(c in text for c in truth)
    assert any(t.startswith("true:") for t in drawn), drawn
