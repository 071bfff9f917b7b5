"""Build, train, evaluate, predict and resume through the Python API on tiny data."""
from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

import mlcore
from conftest import tiny_config
from mlcore.errors import MlcoreError, TrainingInterrupted
from mlcore.registry import Registry


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_fit_writes_the_run_folder_and_evaluates(tiny, tmp_path):
    exp = mlcore.build(tiny)
    assert len(exp.train_set) == 40 and len(exp.val_set) == 16
    assert exp.train_set.targets.shape == (40, 10) and exp.label_info.num_images == 40
    assert exp.label_info.cooccurrence.shape == (10, 10)
    summary = exp.fit()
    run = tmp_path / "run"
    assert summary["reason"] == "finished" and summary["best_epoch"] in (1, 2)
    for f in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / f).is_file(), f
    events = [name for name in os.listdir(run / "events") if name.startswith("events.out.tfevents")]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "events" / events[0]), size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "val/mAP", "val/topk_cf1", "val_ap/red_circle"} <= set(tags["scalars"])
    assert "val/predictions" in tags["images"] and "val_pr/red_circle" in tags["tensors"]
    last = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert (last["epoch"], last["step"], last["batch_in_epoch"]) == (2, 10, 0)
    assert {"model", "optimizer", "scheduler", "rng", "hooks", "config", "classes"} <= set(last)
    assert last["hooks"]["early_stop"]["bad_epochs"] in (0, 1)
    metrics = exp.evaluate("val")
    keys = {"mAP", "ap_list"} | {f"{a}_{b}" for a in ("topk", "threshold") for b in ("cp", "cr", "cf1", "op", "or", "of1")}
    assert keys <= set(metrics) and len(metrics["ap_list"]) == 10
    assert 0 <= metrics["mAP"] <= 1


def test_predict_takes_paths_pil_images_and_batches(tiny):
    from PIL import Image

    exp = mlcore.build(tiny)
    paths = exp.val_set.images[:3]
    p1 = exp.predict(paths)
    assert p1.shape == (3, 10) and bool(((p1 >= 0) & (p1 <= 1)).all())
    with Image.open(paths[0]) as im:
        p2 = exp.predict([im.copy()])
    assert torch.allclose(p1[:1], p2, atol=1e-6)
    batch = torch.stack([exp.val_set[i][0] for i in range(3)])
    assert torch.allclose(exp.predict(batch), p1, atol=1e-6)


class StopAt:
    """A hook that interrupts training after a given step, as a SIGTERM would."""

    def __init__(self, at_step: int = 0):
        self.at_step = at_step

    @mlcore.hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        if step == self.at_step:
            trainer.interrupt()


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    # with EMA, gradient accumulation, warm-up and the seed's stateful loss, all restored
    train = {**tiny_config("x")["train"], "checkpoint_every": 3, "ema": 0.9, "accumulate": 2}
    extra = {"scheduler": {"name": "cosine", "warmup_epochs": 1}, "loss": "tencent"}
    straight = tiny_config(tmp_path / "a", train={**train, "num_workers": 2}, **extra)
    mlcore.build(straight).fit()

    reg = Registry()
    reg.register("hook", "stop_at", StopAt)
    cfg = tiny_config(tmp_path / "b", train=train, stop_at={"at_step": 4}, **extra)
    with pytest.raises(TrainingInterrupted, match=r"Resume with: exp\.fit\(resume=True\)"):
        mlcore.build(cfg, registry=reg).fit()
    ckpt = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)
    # 5 batches an epoch, 2 per optimizer step: step 4 is the first of epoch 2
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (1, 4, 2)
    assert "ema" in ckpt and ckpt["loss"]["t"] >= 1
    cfg["stop_at"] = {"at_step": 0}
    mlcore.build(cfg, registry=reg).fit(resume=True)

    for key in ("model", "ema"):
        a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)[key]
        b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)[key]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)


def test_resume_without_checkpoint_and_wrong_checkpoint(tiny, tmp_path):
    with pytest.raises(MlcoreError, match="nothing to resume"):
        mlcore.build(tiny).fit(resume=True)
    exp = mlcore.build({**tiny, "model": {"name": "resnet34"}})
    bad = tmp_path / "r18.pt"
    torch.save({"format": "mlcore-checkpoint", "model": mlcore.build(tiny).model.state_dict()}, bad)
    with pytest.raises(MlcoreError, match=r"does not fit the model"):
        exp.load_checkpoint(bad)
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "mlcore-checkpoint", "model": Evil()}, evil)
    with pytest.raises(MlcoreError, match=r"refused: loading it would run code \((posix|os)\.system\)"):
        exp.load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MlcoreError, match="not a readable PyTorch checkpoint"):
        exp.load_checkpoint(junk)


def test_early_stopping_stops_and_says_so(tiny, capsys):
    cfg = {**tiny, "train": {**tiny["train"], "epochs": 6}, "optimizer": {"name": "sgd", "lr": 1e-9},
           "early_stop": {"patience": 1, "min_delta": 0.5}}
    summary = mlcore.build(cfg).fit()
    assert summary["reason"] == "early_stop"
    last = torch.load(os.path.join(cfg["output_dir"], "checkpoints/last.pt"), weights_only=True)
    assert last["epoch"] == 2 and last["hooks"]["early_stop"]["bad_epochs"] == 1
    assert "early stop" in capsys.readouterr().out


def test_a_corrupt_training_image_is_replaced_and_named(tmp_path):
    root = tmp_path / "shapes"
    cfg = tiny_config(tmp_path / "run", dataset={"name": "shapes", "root": str(root), "num_train": 16,
                                                   "num_val": 8, "image_size": 32})
    cfg["train"]["epochs"] = 1
    exp = mlcore.build(cfg)
    broken = exp.train_set.images[5]
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlcore.build(cfg).fit()
    assert any(broken in str(w.message) for w in caught)
    assert any("epoch 1: 1 unreadable training image(s) replaced" in str(w.message) for w in caught)
    cfg["data"] = {**cfg["data"], "on_bad_image": "error"}
    with pytest.raises(MlcoreError, match="truncated|cannot"):
        mlcore.build(cfg).fit(overwrite=True)  # the folder holds the run above
    # evaluation: an error naming the image, unless on_bad_image is skip
    bad_val = mlcore.build(cfg).val_set.images[2]
    with open(bad_val, "wb") as f:
        f.write(b"garbage")
    cfg["data"]["on_bad_image"] = "warn"
    with pytest.raises(MlcoreError, match=os.path.basename(bad_val)):
        mlcore.build(cfg).evaluate("val")
    cfg["data"]["on_bad_image"] = "skip"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics, scores = mlcore.build(cfg).evaluate("val", return_scores=True)
    assert metrics["num_skipped_images"] == 1 and any("left out" in str(w.message) for w in caught)
    assert torch.isnan(scores[2]).all() and not torch.isnan(scores[[0, 1, 3]]).any()


def test_create_checks_params_like_a_config():
    with pytest.raises(mlcore.ConfigError, match="unknown key 'topp'.*did you mean 'topk'"):
        mlcore.create("metric", "prf", num_classes=3, topp=2)
    ds = mlcore.create("dataset", "shapes", num_train=8, num_val=4, image_size=32, split="val")
    img, target = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and target.shape == (10,)
    bb = mlcore.create_backbone("timm/resnet18")
    assert bb(torch.zeros(1, 3, 64, 64)).shape == (1, bb.out_dim, 2, 2)


def test_the_initial_weights_follow_train_seed_alone(tmp_path):
    def initial(seed):
        cfg = tiny_config(tmp_path / "run", train={**tiny_config("x")["train"], "seed": seed})
        return mlcore.build(cfg).model.state_dict()

    first = initial(0)
    torch.rand(1000)  # whatever ran before in this process
    again, other = initial(0), initial(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["fc.weight"], other["fc.weight"])


def test_result_json_is_strict_json(tiny, tmp_path):
    from mlcore.cli.results import write_json

    write_json({"mAP": float("nan"), "ap_list": [None, 0.5]}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"mAP": None, "ap_list": [None, 0.5]}


def test_pretrained_weights_load_from_a_local_torchvision_file(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-local.pth"
    torch.save(net.state_dict(), path)
    model = mlcore.create("model", "resnet18", pretrained=str(path), num_classes=4)
    assert torch.equal(model.backbone.conv1.weight, net.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)
    assert model.fc.out_features == 4
    with pytest.raises(MlcoreError, match=r"pretrained weights file '.*gone.pth' does not exist"):
        mlcore.create("model", "resnet18", pretrained=str(tmp_path / "gone.pth"), num_classes=4)
    with pytest.raises(MlcoreError, match=r"(?s)does not fit the model \(weights of another architecture\?\).*layer1.0.conv1.weight"):
        mlcore.create("model", "resnet50", pretrained=str(path), num_classes=4)


def test_schedules_accumulation_and_ema_reports(tiny, tmp_path):
    import json

    cfg = {**tiny, "train": {**tiny["train"], "epochs": 2, "ema": 0.5, "accumulate": 5},
           "optimizer": {"name": "sgd", "lr": 0.1}, "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5,
                                                                  "warmup_epochs": 1, "warmup_factor": 0.1}}
    exp = mlcore.build(cfg)
    summary = exp.fit()
    lines = [json.loads(l) for l in open(os.path.join(cfg["output_dir"], "metrics.jsonl"))]
    assert [(l["epoch"], l["step"]) for l in lines] == [(1, 1), (2, 2)]  # 5 batches an optimizer step
    assert lines[0]["lr"] == pytest.approx(0.1)  # warm-up done, step decay starts after it
    assert lines[1]["lr"] == pytest.approx(0.05)
    assert "ema_mAP" in lines[0] and "ema_mAP" in summary
    from conftest import write_yaml
    from mlcore.cli.main import main

    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert main(["evaluate", str(path), "--out", str(tmp_path / "ev")]) == 0
    result = json.load(open(tmp_path / "ev" / "result.json"))
    assert {"ema_mAP", "ema_ap", "ema_topk_cf1"} <= set(result) and set(result["ema_ap"]) == set(result["classes"])
    env = json.load(open(os.path.join(cfg["output_dir"], "environment.json")))
    assert torch.__version__.startswith(env["torch"]) and env["devices"] == ["cpu"]
    from mlcore.engine.optim import Schedule, build_optimizer

    def schedule(section: dict, model, epochs: int, steps: int):
        spec = mlcore.load_config({**tiny_config("x"), "scheduler": section,
                                   "optimizer": {"name": "sgd", "lr": 0.1}})
        opt = build_optimizer(spec.optimizer, model)
        return opt, Schedule(spec.scheduler, opt, epochs=epochs, steps_per_epoch=steps)

    model = torch.nn.Linear(2, 2)
    opt, sched = schedule({"name": "onecycle"}, model, 2, 5)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step_batch()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(0.1, rel=0.05) and lrs[-1] < 0.01
    opt, sched = schedule({"name": "cosine", "warmup_epochs": 1, "warmup_factor": 0.2}, model, 3, 4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    for _ in range(2):
        sched.step_batch()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 + 0.08 * 2 / 4)
    with pytest.raises(MlcoreError, match="brings its own warm-up"):
        schedule({"name": "onecycle", "warmup_epochs": 1}, model, 2, 5)


def test_backbone_lr_mult_gives_the_backbone_its_own_group(tiny):
    exp = mlcore.build({**tiny, "optimizer": {"name": "sgd", "lr": 0.1, "backbone_lr_mult": 0.1}})
    from mlcore.engine.optim import build_optimizer

    opt = build_optimizer(exp.config.optimizer, exp.model)
    head, body = opt.param_groups
    assert head["lr"] == pytest.approx(0.1) and body["lr"] == pytest.approx(0.01)
    assert {id(p) for p in body["params"]} == {id(p) for p in exp.model.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in exp.model.fc.parameters()}


def test_bf16_autocast_and_channels_last_train_on_cpu(tiny, tmp_path):
    cfg = {**tiny, "train": {**tiny["train"], "epochs": 1, "amp": "bf16", "channels_last": True}}
    summary = mlcore.build(cfg).fit()
    assert 0 <= summary["mAP"] <= 1
    ckpt = torch.load(os.path.join(cfg["output_dir"], "checkpoints/last.pt"), weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in ckpt["model"].values())  # weights stay float32
    with pytest.raises(MlcoreError, match="fp16 needs a CUDA device"):
        mlcore.build({**cfg, "train": {**cfg["train"], "amp": "fp16"}}).fit()


def test_compile_falls_back_with_a_warning():
    from mlcore.engine.compiled import CompiledOrEager

    class Unsupported(torch.nn.Module):
        def forward(self, x):
            return x + 1

    wrapped = CompiledOrEager(Unsupported())
    wrapped.compiled = lambda x: (_ for _ in ()).throw(RuntimeError("no C++ compiler"))
    with pytest.warns(UserWarning, match="training uncompiled"):
        assert torch.equal(wrapped(torch.zeros(2)), torch.ones(2))
    assert wrapped.compiled is None and torch.equal(wrapped(torch.zeros(1)), torch.ones(1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_grad_scaler_resumes_exactly_on_cuda(tmp_path):
    train = {**tiny_config("x")["train"], "amp": "fp16", "channels_last": True, "device": "cuda",
             "checkpoint_every": 2, "deterministic": True}
    mlcore.build(tiny_config(tmp_path / "a", train=train)).fit()
    reg = Registry()
    reg.register("hook", "stop_at", StopAt)
    cfg = tiny_config(tmp_path / "b", train=train, stop_at={"at_step": 7})
    with pytest.raises(TrainingInterrupted):
        mlcore.build(cfg, registry=reg).fit()
    assert torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["scaler"]
    cfg["stop_at"] = {"at_step": 0}
    mlcore.build(cfg, registry=reg).fit(resume=True)
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
