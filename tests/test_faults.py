"""Injected faults: kills at several moments, a full or read-only disk while saving, a
non-finite loss, SIGINT. A run loses at most the steps since its last checkpoint."""
from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time

import pytest
import torch

import mlcore
from conftest import ROOT, tiny_config, write_yaml
from mlcore.errors import MlcoreError
from mlcore.registry import Registry
from test_kill_resume import start, wait_for_checkpoint


def config(tmp_path, name, **train):
    cfg = tiny_config(tmp_path / name, dataset={"name": "shapes", "num_train": 48, "num_val": 8, "image_size": 32,
                                                "seed": 7})
    cfg["train"].update({"batch_size": 4, "checkpoint_every": 1, "epochs": 2, **train})
    cfg["tensorboard"] = False
    return cfg


def test_sigkill_at_several_moments_always_resumes_to_the_same_weights(tmp_path):
    ref = subprocess.run([sys.executable, "-m", "mlcore", "train", str(write_yaml(tmp_path / "ref.yaml",
                                                                                     config(tmp_path, "ref")))],
                         cwd=ROOT, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    want = torch.load(tmp_path / "ref/checkpoints/last.pt", weights_only=True)["model"]
    path = write_yaml(tmp_path / "k.yaml", config(tmp_path, "k"))
    last = tmp_path / "k" / "checkpoints" / "last.pt"
    # checkpoints every step: a kill lands before, during or after a write
    for delay in (0.0, 0.13, 0.37):
        proc = start(path, *(["--resume"] if last.exists() else []))
        wait_for_checkpoint(last, proc, min_step=1)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        torch.load(last, weights_only=True)  # the newest checkpoint on disk is always whole
    done = subprocess.run([sys.executable, "-m", "mlcore", "train", str(path), "--resume"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = torch.load(last, weights_only=True)
    assert got["step"] == 24 and not list(last.parent.glob(".*.tmp-*"))
    for k in want:
        assert torch.equal(want[k], got["model"][k]), k


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EROFS, "Read-only file system")])
def test_a_failing_disk_is_reported_and_the_previous_checkpoint_survives(tmp_path, monkeypatch, code, words):
    cfg = config(tmp_path, "disk", epochs=1, checkpoint_every=2)
    real_save = torch.save
    calls = []

    def failing_save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint write finds the disk full / read-only
            f.write(b"partial")
            raise OSError(code, words)
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(MlcoreError, match=f"cannot write checkpoint .*last.pt.*{words}.*previous checkpoint"):
        mlcore.build(cfg).fit()
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = torch.load(tmp_path / "disk/checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 2  # the first one, intact
    assert not list((tmp_path / "disk/checkpoints").glob(".*.tmp-*"))


class NaNAfter:
    """BCE, until the loss turns NaN at the given call."""

    def __init__(self, at: int = 3):
        self.at, self.calls = at, 0

    def __call__(self, logits, targets):
        self.calls += 1
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        return loss * float("nan") if self.calls >= self.at else loss


def test_a_nan_loss_stops_at_once_naming_step_lr_and_checkpoint(tmp_path):
    reg = Registry()
    reg.register("loss", "nan_after", NaNAfter)
    cfg = {**config(tmp_path, "nan", log_every=1), "loss": {"name": "nan_after", "at": 3}}
    with pytest.raises(MlcoreError, match=r"loss became nan at step 3 \(epoch 1, lr 0.001\).*last.pt"):
        mlcore.build(cfg, registry=reg).fit()
    assert torch.load(tmp_path / "nan/checkpoints/last.pt", weights_only=True)["step"] == 2


def test_sigint_saves_and_prints_the_resume_command(tmp_path):
    path = write_yaml(tmp_path / "i.yaml", config(tmp_path, "i", checkpoint_every=0))
    proc = start(path)
    last = tmp_path / "i" / "checkpoints" / "last.pt"
    deadline = time.time() + 60
    while not (tmp_path / "i" / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Resume with: mlcore train" in err
    assert torch.load(last, weights_only=True)["step"] >= 1
