"""The run lifecycle: a run folder holds one run (refused, ``--overwrite``, a numbered
folder per run), a resume is the same run (its saved config, changes checked, the printed
command resumes), TensorBoard keeps the checkpoint's step, a bad validation image loses
no epoch, and the Python API uses the weights the CLI would (and says which).

The CLI is called in-process (``mlcore.cli.main.main``), as ``python -m mlcore`` would
run it, with a test registry holding a hook that interrupts training."""
from __future__ import annotations

import json
import os
import shlex
import signal
import warnings

import pytest
import torch
import yaml

import mlcore
from conftest import tiny_config, write_yaml
from mlcore.errors import MlcoreError, TrainingInterrupted
from mlcore.registry import Registry
from tiny_backbone import TinyBackbone


class SigintAt:
    """A hook that sends this process a real SIGINT after a given optimizer step."""

    def __init__(self, at_step: int = 0):
        self.at_step = at_step

    @mlcore.hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        if step == self.at_step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """A registry with the ``sigint_at`` hook and a one-convolution backbone (these tests
    are about the run, not the model), used by ``mlcore.build`` and the CLI alike."""
    from mlcore import config as config_mod
    from mlcore import factory

    reg = Registry()
    reg.register("hook", "sigint_at", SigintAt)
    reg.register("backbone", "lifecycle_tiny", TinyBackbone)
    monkeypatch.setattr(config_mod, "default_registry", lambda: reg)
    monkeypatch.setattr(factory, "default_registry", lambda: reg)
    return reg


def small(output_dir, **over) -> dict:
    """16 training images in batches of 8 (2 steps an epoch), 8 validation images, 1 epoch,
    a one-convolution model."""
    over.setdefault("model", {"name": "classifier", "backbone": "lifecycle_tiny"})
    cfg = tiny_config(output_dir, **over)
    cfg["dataset"] = {**cfg["dataset"], "num_train": 16, "num_val": 8}
    if "train" not in over:
        cfg["train"] = {**cfg["train"], "epochs": 1}
    cfg.setdefault("tensorboard", False)
    return cfg


def cli(*args, capsys=None) -> tuple[int, str, str]:
    """``mlcore ARGS`` in this process: (exit status, stdout, stderr)."""
    from mlcore.cli.main import main

    shown = warnings.showwarning  # main() installs its own warning printer
    try:
        rc = main([str(a) for a in args])
    finally:
        warnings.showwarning = shown
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return rc, out, err


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


# -- 1. runs never overwrite runs -------------------------------------------------------------
def test_a_folder_holding_a_run_is_refused_and_overwrite_starts_clean(tmp_path, capsys, registry):
    run = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", small(run))
    assert cli("train", cfg, capsys=capsys)[0] == 0
    (run / "label_vectors.npy").write_bytes(b"a user's file")  # as make demo-ssgrl puts there
    (run / "eval").mkdir()
    (run / "eval" / "result.json").write_text("{}")
    before = (run / "metrics.jsonl").read_text()

    rc, out, err = cli("train", cfg, capsys=capsys)
    assert rc == 2 and "Traceback" not in err
    assert str(run) in err and "--resume" in err and "--overwrite" in err and "already holds a run" in err
    assert (run / "metrics.jsonl").read_text() == before  # nothing appended

    assert cli("train", cfg, "--overwrite", "--resume", capsys=capsys)[0] == 2  # one or the other
    # a folder another run holds is not cleared under it
    from mlcore.engine.run_lock import RunLock

    with RunLock(run):
        rc, out, err = cli("train", cfg, "--overwrite", capsys=capsys)
        assert rc == 2 and "in use by another training run" in err
        assert (run / "checkpoints" / "last.pt").is_file() and (run / "eval").is_dir()

    rc, out, err = cli("train", cfg, "--overwrite", capsys=capsys)
    assert rc == 0, err
    assert "removed the previous run's" in out
    assert len(rows(run)) == 1  # a clean run: one epoch, not two
    assert not (run / "eval").exists()  # it described a checkpoint that is gone
    assert (run / "label_vectors.npy").read_bytes() == b"a user's file"  # not a run's file: kept
    assert json.loads((run / "result.json").read_text())["mAP"] == rows(run)[0]["mAP"]


def test_a_config_without_output_dir_gets_a_new_numbered_folder_per_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = small("unused")
    del cfg["output_dir"]
    path = write_yaml(tmp_path / "mine.yaml", cfg)
    assert cli("train", path, capsys=capsys)[0] == 0
    rc, out, _ = cli("train", path, capsys=capsys)
    assert rc == 0 and "run folder: runs/mine/version_1" in out
    assert (tmp_path / "runs/mine/version_0/checkpoints/best.pt").is_file()
    assert (tmp_path / "runs/mine/version_1/checkpoints/best.pt").is_file()
    # the saved config names its own folder; reading commands find the newest run
    saved = yaml.safe_load((tmp_path / "runs/mine/version_1/config.yaml").read_text())
    assert saved["output_dir"] == "runs/mine/version_1"
    assert mlcore.build(str(path)).config.output_dir == "runs/mine/version_1"
    # the Python API too, for a mapping (runs/default); a run that fails at setup leaves no folder
    exp = mlcore.build(cfg)
    exp.fit()
    assert exp.config.output_dir == "runs/default/version_0" and (tmp_path / exp.config.output_dir).is_dir()
    bad = mlcore.build({**cfg, "train": {**cfg["train"], "amp": "fp16", "device": "cpu"}})
    with pytest.raises(MlcoreError, match="fp16"):
        bad.fit()
    assert sorted(os.listdir(tmp_path / "runs/default")) == ["version_0"]


# -- 2. resume is the same run ----------------------------------------------------------------
def test_resume_checks_the_config_against_the_runs_own(tmp_path, capsys, registry):
    run = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", small(run))
    assert cli("train", cfg, "--set", "train.batch_size=4", capsys=capsys)[0] == 0
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 4

    # the file without the run's --set: the batch size would change: refused, listed
    rc, out, err = cli("train", cfg, "--resume", "--set", "train.epochs=2", capsys=capsys)
    assert rc == 2 and "train.batch_size: 4 -> 8" in err and "train.epochs: 1 -> 2" not in err
    assert f"mlcore train {run / 'config.yaml'} --resume" in err and "--force" in err
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 4  # untouched
    assert cli("train", cfg, "--force", capsys=capsys)[0] == 2  # --force is for a resume

    # the run's own config: what may change mid-run changes, and is said
    rc, out, err = cli("train", run / "config.yaml", "--resume", "--set", "train.epochs=2", "train.log_every=1",
                       capsys=capsys)
    assert rc == 0, err
    assert "train.epochs: 1 -> 2" in out and "train.log_every: 2 -> 1" in out
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (2, 8)  # still 4 steps an epoch: batch 4
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["batch_size"] == 4 and saved["train"]["epochs"] == 2

    # forced: goes on with the change, and warns that the run is no longer exact
    rc, out, err = cli("train", cfg, "--resume", "--force", "--set", "train.epochs=3", capsys=capsys)
    assert rc == 0, err
    assert "train.batch_size: 4 -> 8" in err and "break exactness" in err
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 8 + 2
    # the Python API says it in its own words
    exp = mlcore.build(small(run, model={"name": "resnet34"}, train={**tiny_config(run)["train"], "epochs": 3}))
    with pytest.raises(MlcoreError, match=r"model\.name: classifier -> resnet34[\s\S]*fit\(resume=True, force=True\)"):
        exp.fit(resume=True)


def test_sigint_prints_exactly_the_command_that_resumes(tmp_path, capsys, registry):
    run = tmp_path / "int"
    cfg = write_yaml(tmp_path / "my.yaml", small(tmp_path / "elsewhere", sigint_at={"at_step": 3}))
    rc, out, err = cli("train", cfg, "--set", f"output_dir={run}", "train.epochs=2", "train.batch_size=4",
                       capsys=capsys)
    assert rc == 130, err
    command = err.split("Resume with: ", 1)[1].strip()
    assert command == f"mlcore train {run / 'config.yaml'} --resume"
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 3
    rc, out, err = cli(*shlex.split(command)[1:], capsys=capsys)  # exactly that, nothing added
    assert rc == 0, err
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (2, 8)  # 2 epochs of batch 4, as started
    assert [r["epoch"] for r in rows(run)] == [1, 2]

    # under the Python API the message says how to resume there
    exp = mlcore.build(small(tmp_path / "api", sigint_at={"at_step": 1}))
    with pytest.raises(TrainingInterrupted, match=r"Resume with: exp\.fit\(resume=True\)") as caught:
        exp.fit()
    assert "mlcore train" not in str(caught.value).split("in a new session")[0]
    exp.config.hooks = [h for h in exp.config.hooks if h.name != "sigint_at"]  # hooks may change on resume
    assert exp.fit(resume=True)["reason"] == "finished"


# -- 3. TensorBoard keeps the checkpoint's step -----------------------------------------------
def test_tensorboard_resume_keeps_the_checkpoints_own_step(tmp_path):
    from mlcore_builtins.hooks.tensorboard_logger import purge_step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = small(tmp_path / "tb", tensorboard={})
    mlcore.build(cfg).fit()  # epoch 1 ends at step 2, its validation logged at step 2
    cfg["train"]["epochs"] = 2
    mlcore.build(cfg).fit(resume=True)
    acc = EventAccumulator(str(tmp_path / "tb" / "events"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in acc.Scalars("val/mAP")] == [2, 4]  # epoch 1's, kept, and epoch 2's
    assert purge_step(0) is None and purge_step(2) == 3


# -- 4. a bad validation image loses no epoch -------------------------------------------------
def test_a_bad_validation_image_keeps_the_epoch_and_says_how_to_resume(tmp_path):
    cfg = small(tmp_path / "run", dataset={"name": "shapes", "root": str(tmp_path / "shapes"), "num_train": 16,
                                             "num_val": 8, "image_size": 32})
    cfg["data"] = {**cfg["data"], "on_bad_image": "error"}
    bad = mlcore.build(cfg).val_set.images[3]
    with open(bad, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(MlcoreError) as caught:
        mlcore.build(cfg).fit()
    message = str(caught.value)
    assert os.path.basename(bad) in message and "validation of epoch 1 failed" in message
    assert "exp.fit(resume=True)" in message and "on_bad_image" in message
    last = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert (last["epoch"], last["step"], last["batch_in_epoch"]) == (0, 2, 2)  # trained, not validated
    assert not (tmp_path / "run/checkpoints/best.pt").exists()  # best waits for a validation

    cfg["data"]["on_bad_image"] = "skip"  # a change a resume may make
    summary = mlcore.build(cfg).fit(resume=True)
    assert summary["best_epoch"] == 1 and summary["num_skipped_images"] == 1
    last = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert (last["epoch"], last["step"], last["batch_in_epoch"]) == (1, 2, 0)  # no step trained twice
    assert [r["epoch"] for r in rows(tmp_path / "run")] == [1]
    assert torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)["best_epoch"] == 1


# -- 5. the Python API behaves like the CLI ---------------------------------------------------
def test_the_api_uses_the_weights_the_cli_would_and_says_which(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = small(run, train={**tiny_config(run)["train"], "epochs": 3, "monitor": "mAP", "mode": "min"})

    fresh = mlcore.build(cfg)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        fresh.predict(fresh.val_set.images[:2])

    exp = mlcore.build(cfg)
    summary = exp.fit()
    result = json.loads((run / "result.json").read_text())  # written by fit, as by the CLI
    assert result["mAP"] == pytest.approx(summary["mAP"]) and result["classes"] == exp.classes
    assert set(result["ap"]) == set(exp.classes)
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)["model"]
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)["model"]
    held = exp.model.state_dict()
    assert all(torch.equal(held[k].cpu(), best[k]) for k in best)  # fit leaves the best weights
    assert "best.pt" in exp.weights_source
    assert exp.evaluate()["mAP"] == pytest.approx(summary["mAP"])  # what fit reported
    if summary["best_epoch"] != 3:  # (then best and last differ, and this tells them apart)
        assert not all(torch.equal(best[k], last[k]) for k in best)
    exp.load_checkpoint("last")
    assert all(torch.equal(exp.model.state_dict()[k].cpu(), last[k]) for k in last)
    assert exp.weights_source == str(run / "checkpoints/last.pt")

    # a new Experiment on the run: evaluate and predict load its best.pt, and say so
    again = mlcore.build(cfg)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = again.evaluate()
    assert not [w for w in caught if "UNTRAINED" in str(w.message)]
    assert "uses the run's best weights" in capsys.readouterr().err
    assert metrics["mAP"] == pytest.approx(summary["mAP"])
    other = mlcore.build(cfg)
    other.predict(other.val_set.images[:1])
    assert "best.pt" in other.weights_source and "best weights" in capsys.readouterr().err
    with pytest.raises(MlcoreError, match="does not exist"):
        mlcore.build(small(tmp_path / "empty")).load_checkpoint("last")


def test_a_run_saved_before_newer_config_keys_resumes(tmp_path, capsys, registry):
    """A run whose config.yaml predates keys added since (they took their defaults) is the
    same run: resuming it with its own config is no change."""
    run = tmp_path / "old"
    cfg = write_yaml(tmp_path / "c.yaml", small(run))
    assert cli("train", cfg, capsys=capsys)[0] == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("calib_split", "calib_holdout"):  # keys added after such a run was written
        saved["data"].pop(key, None)
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    rc, out, err = cli("train", run / "config.yaml", "--resume", "--set", "train.epochs=2", capsys=capsys)
    assert rc == 0, err
    assert "calib" not in out + err and "train.epochs: 1 -> 2" in out


def test_the_resume_command_works_from_another_folder(tmp_path, capsys, registry, monkeypatch):
    """A relative output_dir: the printed command names the run by absolute paths."""
    monkeypatch.chdir(tmp_path)
    cfg = write_yaml(tmp_path / "my.yaml", small("runs/rel", sigint_at={"at_step": 1}))
    rc, out, err = cli("train", cfg, capsys=capsys)
    assert rc == 130, err
    command = err.split("Resume with: ", 1)[1].strip()
    assert str(tmp_path / "runs" / "rel" / "config.yaml") in command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, out, err = cli(*shlex.split(command)[1:], capsys=capsys)
    assert rc == 0, err
    assert not (elsewhere / "runs").exists()  # the run went on in its own folder
    assert torch.load(tmp_path / "runs" / "rel" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
