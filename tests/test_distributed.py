"""Two gloo ranks on the CPU through torchrun: training, exact distributed evaluation, a
rank that dies."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT, make_dist, run_cli, tiny_config, write_yaml


def torchrun(*args, env=None, timeout=300):
    import os

    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "mlcore", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def config(tmp_path, **train):
    cfg = tiny_config(tmp_path / "run", dataset={"name": "shapes", "num_train": 40, "num_val": 13,
                                                 "image_size": 32, "seed": 3})
    cfg["train"].update({"epochs": 1, "batch_size": 4, "device": "cpu", **train})  # gloo, on a GPU machine too
    cfg["tensorboard"] = False
    return write_yaml(tmp_path / "c.yaml", cfg)


def test_two_ranks_train_and_evaluate_exactly_the_n_samples(tmp_path):
    cfg = config(tmp_path, checkpoint_every=2)
    proc = run_cli("train", cfg, "--nproc", "2")  # the shortcut execs torchrun
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    for f in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "result.json", "metrics.jsonl"):
        assert (run / f).is_file(), f
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # rank 0 alone writes
    import torch

    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert last["step"] == 5  # 40 images, 2 ranks, 4 per rank and step

    one = run_cli("evaluate", cfg, "--out", tmp_path / "ev1")
    two = torchrun("evaluate", cfg, "--out", tmp_path / "ev2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    r1 = json.loads((tmp_path / "ev1/result.json").read_text())
    r2 = json.loads((tmp_path / "ev2/result.json").read_text())
    assert r2["num_images"] == 13  # an odd count: no sample padded in, none dropped
    for k in ("mAP", "ap_list", "topk_cf1", "threshold_of1"):
        assert r1[k] == r2[k], k
    s1, s2 = np.load(tmp_path / "ev1/scores.npy"), np.load(tmp_path / "ev2/scores.npy")
    assert s1.shape == s2.shape == (13, 10) and np.allclose(s1, s2, atol=1e-6)


def test_a_rank_that_dies_ends_the_run(tmp_path):
    plugin = make_dist(tmp_path / "site", "mlcore-test-killer", {"mlcore.hooks": {"killer": "killer_mod"}}, {
        "killer_mod": """
            import os
            from mlcore import hookimpl

            @hookimpl
            def mlcore_train_step_end(trainer, step, loss, lr):
                if step == 2 and os.environ.get("RANK") == "1":
                    os._exit(3)
        """})
    cfg = config(tmp_path, dist_timeout=30, epochs=3)
    started = time.time()
    proc = torchrun("train", cfg, env={"PYTHONPATH": str(plugin)}, timeout=240)
    assert proc.returncode != 0
    assert time.time() - started < 200


def test_two_rank_run_interrupted_mid_epoch_resumes_exactly(tmp_path):
    import torch

    site = make_dist(tmp_path / "site", "mlcore-test-stopper", {"mlcore.hooks": {"stopper": "stopper_mod:StopAt"}}, {
        "stopper_mod": """
            from mlcore import hookimpl

            class StopAt:
                def __init__(self, at_step: int = 0):
                    self.at_step = at_step

                @hookimpl
                def mlcore_train_step_end(self, trainer, step, loss, lr):
                    if step == self.at_step:
                        trainer.interrupt()
        """})
    env = {"PYTHONPATH": str(site)}
    cfg = config(tmp_path, epochs=2, checkpoint_every=2)
    straight = torchrun("train", cfg, "--set", f"output_dir={tmp_path / 'a'}", env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    stopped = torchrun("train", cfg, "--set", f"output_dir={tmp_path / 'b'}", "stopper.at_step=7", env=env)
    assert stopped.returncode != 0 and "Resume with" in stopped.stderr
    ckpt = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (1, 7, 2)  # 5 steps an epoch
    resumed = torchrun("train", cfg, "--set", f"output_dir={tmp_path / 'b'}", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_cuda_run_needs_a_gpu_per_process(monkeypatch):
    import pytest
    import torch

    from mlcore.engine.distributed import check_gpus_for
    from mlcore.errors import ConfigError

    check_gpus_for(8, torch.device("cpu"))  # gloo ranks share the CPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_gpus_for(1, torch.device("cuda"))
    with pytest.raises(ConfigError, match=r"--nproc: 2 processes need a GPU each, but 1 CUDA device\(s\)"):
        check_gpus_for(2, torch.device("cuda"))
