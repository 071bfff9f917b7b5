"""A real training process killed (SIGKILL) mid-epoch, then resumed, ends with the same
weights as an uninterrupted run, tensor for tensor; SIGTERM saves and says how to resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from conftest import ROOT, tiny_config, write_yaml


def config(tmp_path, name):
    cfg = tiny_config(tmp_path / name, dataset={"name": "shapes", "num_train": 64, "num_val": 8, "image_size": 32,
                                                "seed": 5})
    cfg["train"].update(batch_size=4, checkpoint_every=2, epochs=2)
    cfg["tensorboard"] = False
    return write_yaml(tmp_path / f"{name}.yaml", cfg)


def start(path, *extra):
    return subprocess.Popen([sys.executable, "-m", "mlcore", "train", str(path), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(last, proc, min_step, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                ckpt = torch.load(last, weights_only=True)
            except Exception:  # mid-rename on a slow filesystem: look again
                continue
            if ckpt["step"] >= min_step:
                return ckpt
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step >= {min_step} (exit {proc.poll()})")


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref = subprocess.run([sys.executable, "-m", "mlcore", "train", str(config(tmp_path, "ref"))], cwd=ROOT,
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    path = config(tmp_path, "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    proc = start(path)
    seen = wait_for_checkpoint(last, proc, min_step=4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert seen["batch_in_epoch"] > 0  # the checkpoint seen, and so the kill, fell mid-epoch
    resumed = subprocess.run([sys.executable, "-m", "mlcore", "train", str(path), "--resume"], cwd=ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (2, 32)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        for name, t in v.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(b["optimizer"]["state"][k][name])), (k, name)


def test_sigterm_saves_and_prints_the_resume_command(tmp_path):
    path = config(tmp_path, "term")
    last = tmp_path / "term" / "checkpoints" / "last.pt"
    proc = start(path)
    wait_for_checkpoint(last, proc, min_step=2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"Resume with: mlcore train {tmp_path / 'term' / 'config.yaml'} --resume" in err
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["step"] >= 2
    assert not [f for f in os.listdir(last.parent) if f.startswith(".")]  # no temporary file left
