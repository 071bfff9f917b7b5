"""The CUDA paths, run by ``benchmarks/gpu_check.sh`` on a machine with a GPU (skipped
elsewhere): every model plugin trains under bf16 autocast with channels-last memory and
evaluates to what the CPU computes from the same weights; torch.compile trains on CUDA;
more ranks than GPUs is one clear error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mlcore
from conftest import run_cli, tiny_config, write_yaml
from mlcore.registry import Registry

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA_TRAIN = {"epochs": 1, "batch_size": 8, "num_workers": 0, "seed": 0, "log_every": 2,
              "device": "cuda", "amp": "bf16", "channels_last": True}


def embeddings(tmp_path, n=10, dim=32):
    path = tmp_path / "emb.npy"
    np.save(path, np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32))
    return str(path)


def models(tmp_path):
    emb = embeddings(tmp_path)
    return {
        "resnet18": {"name": "resnet18"},
        "csra": {"name": "csra", "backbone": "resnet18", "heads": 4, "lam": 0.5},
        "mlgcn": {"name": "mlgcn", "backbone": "resnet18", "embeddings": emb, "t": 0.3},
        "ssgrl": {"name": "ssgrl", "backbone": "resnet18", "embeddings": emb, "hidden_dim": 64,
                  "output_dim": 48, "freeze": "none"},
        "q2l": {"name": "q2l", "backbone": "resnet18", "heads": 4, "ff_dim": 64},
        "ml_decoder": {"name": "ml_decoder", "backbone": "resnet18", "num_groups": -1, "decoder_dim": 32,
                       "heads": 4, "ff_dim": 64},
    }


@pytest.mark.parametrize("name", ["resnet18", "csra", "mlgcn", "ssgrl", "q2l", "ml_decoder"])
def test_each_model_trains_in_bf16_on_cuda_and_scores_as_on_the_cpu(tmp_path, name):
    cfg = tiny_config(tmp_path / "run", model=models(tmp_path)[name], train=dict(CUDA_TRAIN), tensorboard=False)
    exp = mlcore.build(cfg)
    exp.fit()
    assert next(exp.model.parameters()).is_cuda
    assert np.isfinite(exp.evaluate()["mAP"])
    exp.model.eval()
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        on_gpu = torch.sigmoid(exp.model(exp.normalizer(x.cuda())).float()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            in_bf16 = torch.sigmoid(exp.model(exp.normalizer(x.cuda())).float()).cpu()
        cpu_model = exp.model.float().cpu().to(memory_format=torch.contiguous_format)
        on_cpu = torch.sigmoid(cpu_model(exp.normalizer(x)))
    assert torch.isfinite(in_bf16).all()
    assert torch.allclose(on_gpu, on_cpu, atol=2e-3), (on_gpu - on_cpu).abs().max()  # TF32 convolutions
    assert torch.allclose(in_bf16, on_cpu, atol=5e-2), (in_bf16 - on_cpu).abs().max()


class LossRecorder:
    """A hook that keeps every step's loss, in ``LossRecorder.losses``."""

    losses: list = []

    @mlcore.hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        LossRecorder.losses.append(loss)


def test_compiled_training_on_cuda_follows_eager_training(tmp_path):
    # This tiny BatchNorm network magnifies rounding within a few steps (on the CPU,
    # oneDNN's channels-last convolutions alone move step 5's loss by 6 %; on an H200 the
    # TF32 convolutions, chosen differently once compiled, move step 2's by 0.2 %): the
    # first steps must agree closely, the later ones stay finite and near.
    losses = {}
    for compile_ in (False, True):
        reg = Registry()
        reg.register("hook", "record", LossRecorder)
        train = {**CUDA_TRAIN, "compile": compile_, "amp": "off", "deterministic": True, "log_every": 1}
        exp = mlcore.build(tiny_config(tmp_path / f"run{compile_}", train=train, tensorboard=False, record={},
                                       optimizer={"name": "sgd", "lr": 0.01}), registry=reg)
        LossRecorder.losses = []
        exp.fit()
        losses[compile_] = np.array(LossRecorder.losses)
    eager, compiled = losses[False], losses[True]
    assert len(eager) == len(compiled) == 5 and np.isfinite(compiled).all()
    assert np.allclose(eager[:2], compiled[:2], rtol=1e-2), (eager, compiled)
    assert np.allclose(eager, compiled, rtol=0.1), (eager, compiled)


def test_more_processes_than_gpus_is_one_clear_error(tmp_path):
    ranks = torch.cuda.device_count() + 1
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run", train=dict(CUDA_TRAIN), tensorboard=False))
    proc = run_cli("train", cfg, "--nproc", ranks)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"--nproc: {ranks} processes need a GPU each" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
