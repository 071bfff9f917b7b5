"""The plugin SDK's contracts, from a third party's side: hooks checked at start and
their state kept per plugin, optimizers and schedulers as plugins, epochs numbered from
1 everywhere, the monitored metric deciding the best epoch, and DDP accumulation."""
from __future__ import annotations

import contextlib
import json
import os
import warnings

import pytest
import torch

import mlcore
from conftest import make_dist, run_cli, tiny_config, write_yaml
from mlcore.errors import PluginError
from mlcore.registry import Registry


def test_a_misspelled_hook_is_an_error_naming_plugin_distribution_and_hook(tmp_path):
    site = make_dist(tmp_path / "site", "mlcore-test-typo", {"mlcore.hooks": {"typo": "typo_mod"}}, {
        "typo_mod": """
            from mlcore import hookimpl

            @hookimpl
            def mlcore_epoch_ends(trainer, epoch):
                raise AssertionError("never called")
        """})
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    proc = run_cli("train", cfg, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert "hook plugin 'typo'" in err and "mlcore-test-typo" in err and "'mlcore_epoch_ends'" in err
    assert "did you mean 'mlcore_epoch_end'" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_hook_taking_an_argument_its_hook_does_not_give_is_an_error(tmp_path):
    class Wrong:
        @mlcore.hookimpl
        def mlcore_epoch_end(self, trainer, epoch, lossy):
            pass

    reg = Registry()
    reg.register("hook", "wrong", Wrong)
    with pytest.raises(PluginError, match="hook plugin 'wrong'.*: its mlcore_epoch_end takes 'lossy', which "
                                          "the hook does not give \\(it gives trainer, epoch, train_loss, metrics\\)"):
        mlcore.build(tiny_config(tmp_path / "run"), registry=reg).fit()


TALLY = """
    import os, signal
    from mlcore import hookimpl

    class Tally:
        '''Counts optimizer steps; can kill its own process at a step (as a crash would).'''

        def __init__(self, kill_at: int = 0):
            self.kill_at = kill_at
            self.steps = 0
            self.epochs = []

        @hookimpl
        def mlcore_train_step_end(self, trainer, step):
            self.steps += 1
            if step == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        @hookimpl
        def mlcore_epoch_end(self, trainer, epoch):
            self.epochs.append(epoch)

        @hookimpl
        def mlcore_state_dict(self, trainer):
            return {"steps": self.steps, "epochs": list(self.epochs)}

        @hookimpl
        def mlcore_load_state_dict(self, trainer, state):
            self.steps, self.epochs = state["steps"], list(state["epochs"])
"""


def test_a_third_party_hooks_state_survives_a_kill_and_resume(tmp_path):
    site = make_dist(tmp_path / "site", "mlcore-test-tally", {"mlcore.hooks": {"tally": "tally_mod:Tally"}},
                     {"tally_mod": TALLY})
    env = {"PYTHONPATH": str(site)}
    cfg = tiny_config(tmp_path / "run", tally={"kill_at": 7}, tensorboard=False)
    cfg["train"].update(checkpoint_every=2)
    path = write_yaml(tmp_path / "c.yaml", cfg)
    killed = run_cli("train", path, env=env)
    assert killed.returncode == -9, killed.stderr
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["step"] == 6 and ckpt["hooks"]["tally"] == {"steps": 6, "epochs": [1]}  # saved under its name
    resumed = run_cli("train", path, "--resume", "--set", "tally.kill_at=0", env=env)
    assert resumed.returncode == 0, resumed.stderr
    ckpt = torch.load(last, weights_only=True)
    # 5 steps an epoch, 2 epochs: the count went on from the checkpoint's 6, not from 0
    assert ckpt["step"] == 10 and ckpt["hooks"]["tally"] == {"steps": 10, "epochs": [1, 2]}


def test_a_third_party_optimizer_and_scheduler_are_used_by_name(tmp_path):
    def sgdw(params, lr: float = 0.05, momentum: float = 0.9):
        """SGD under another name."""
        return torch.optim.SGD(params, lr=lr, momentum=momentum)

    def halving(optimizer, every: int = 1):
        """Halve the lr every few epochs."""
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=0.5)

    reg = Registry()
    reg.register("optimizer", "sgdw", sgdw)
    reg.register("scheduler", "halving", halving)
    cfg = tiny_config(tmp_path / "run", optimizer={"name": "sgdw", "lr": 0.02, "backbone_lr_mult": 0.5},
                      scheduler={"name": "halving"})
    exp = mlcore.build(cfg, registry=reg)
    assert mlcore.load_config(cfg, registry=reg).optimizer.as_yaml() == {
        "name": "sgdw", "backbone_lr_mult": 0.5, "lr": 0.02, "momentum": 0.9}
    from mlcore.engine.trainer import Trainer

    trainer = Trainer(exp)
    trainer.fit()
    opt = trainer.optimizer
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9
    head, body = opt.param_groups
    assert head["lr"] == pytest.approx(0.02 * 0.5 ** 2) and body["lr"] == pytest.approx(0.01 * 0.5 ** 2)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.005])

    with pytest.raises(mlcore.ConfigError, match="did you mean 'momentum'"):
        mlcore.load_config({**cfg, "optimizer": {"name": "sgdw", "momentun": 0.5}}, registry=reg)
    with pytest.raises(mlcore.ConfigError, match="unknown optimizer 'sgdww'.*did you mean 'sgdw'"):
        mlcore.load_config({**cfg, "optimizer": "sgdww"}, registry=reg)


def test_disabled_or_broken_hooks_keep_their_section_legal(tmp_path):
    cfg = tiny_config(tmp_path / "run", early_stop={"patience": 3})
    with pytest.warns(UserWarning, match="hook plugin 'early_stop'.*section 'early_stop' is ignored.*switched off"):
        loaded = mlcore.load_config(cfg, registry=Registry(disabled="hook:early_stop"))
    assert "early_stop" not in [h.name for h in loaded.hooks]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switched off and not mentioned: nothing to say
        mlcore.load_config(tiny_config(tmp_path / "run"), registry=Registry(disabled="hook:early_stop"))

    site = make_dist(tmp_path / "site", "mlcore-test-broken", {"mlcore.hooks": {"broken": "broken_mod"}},
                     {"broken_mod": "raise ImportError('no such thing')\n"})
    path = write_yaml(tmp_path / "c.yaml", {**cfg, "broken": {"x": 1}, "train": {**cfg["train"], "epochs": 1}})
    proc = run_cli("train", path, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert "hook plugin 'broken' from distribution 'mlcore-test-broken' is not active" in proc.stderr
    assert "section 'broken' is ignored" in proc.stderr and "no such thing" in proc.stderr


class Recorder:
    def __init__(self, fail_at_end: bool = False, raise_at_epoch: int = 0):
        self.fail_at_end, self.raise_at_epoch = fail_at_end, raise_at_epoch
        self.calls: list = []

    @mlcore.hookimpl
    def mlcore_epoch_start(self, epoch, num_steps):
        self.calls.append(("start", epoch))

    @mlcore.hookimpl
    def mlcore_validation_end(self, epoch):
        self.calls.append(("validation", epoch))

    @mlcore.hookimpl
    def mlcore_epoch_end(self, trainer, epoch):
        self.calls.append(("end", epoch, trainer.epoch))
        if epoch == self.raise_at_epoch:
            raise RuntimeError("the original failure")

    @mlcore.hookimpl
    def mlcore_train_end(self, reason):
        self.calls.append(("train_end", reason))
        if self.fail_at_end:
            raise ValueError("a failing train_end")


def test_epochs_count_from_one_in_hooks_logs_results_and_checkpoints(tmp_path):
    rec = Recorder()
    reg = Registry()
    reg.register("hook", "recorder", lambda: rec)
    cfg = tiny_config(tmp_path / "run")
    summary = mlcore.build(cfg, registry=reg).fit()
    assert rec.calls == [("start", 1), ("validation", 1), ("end", 1, 1), ("start", 2), ("validation", 2),
                         ("end", 2, 2), ("train_end", "finished")]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    best = max(rows, key=lambda r: r["mAP"])
    assert summary["best_epoch"] == best["epoch"]
    assert torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)["epoch"] == best["epoch"]
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["epoch"] == 2


def test_train_end_gets_error_and_a_failing_hook_never_hides_the_original(tmp_path):
    rec = Recorder(fail_at_end=True, raise_at_epoch=1)
    reg = Registry()
    reg.register("hook", "recorder", lambda: rec)
    with pytest.warns(UserWarning, match="mlcore_train_end failed.*a failing train_end"):
        with pytest.raises(RuntimeError, match="the original failure"):
            mlcore.build(tiny_config(tmp_path / "run"), registry=reg).fit()
    assert rec.calls[-1] == ("train_end", "error")


def test_train_monitor_decides_the_best_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "run", train={**tiny_config("x")["train"], "epochs": 3, "monitor": "mAP",
                                               "mode": "min"}, early_stop=False)
    summary = mlcore.build(cfg).fit()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    worst = min(rows, key=lambda r: r["mAP"])
    assert summary["best_epoch"] == worst["epoch"] and summary["monitor"] == "mAP"
    assert summary["best_score"] == pytest.approx(worst["mAP"])
    with pytest.raises(mlcore.ConfigError, match="train.mode: expected one of 'max', 'min'"):
        mlcore.load_config({**cfg, "train": {**cfg["train"], "mode": "up"}})


def test_accumulation_under_ddp_all_reduces_only_on_optimizer_steps(tmp_path):
    from mlcore.engine.trainer import Trainer

    class FakeDDP:
        """Counts the micro-steps run under no_sync (DDP itself needs several processes)."""

        def __init__(self, model):
            self.model, self.local = model, 0

        @contextlib.contextmanager
        def no_sync(self):
            self.local += 1
            yield

        def __call__(self, x):
            return self.model(x)

    class Probe(Trainer):
        def _training_forward(self, model):
            self.ddp = FakeDDP(model)
            return self.ddp

    cfg = tiny_config(tmp_path / "run")
    cfg["train"].update(accumulate=2)
    trainer = Probe(mlcore.build(cfg))
    trainer.fit()
    # 5 batches an epoch, an optimizer step after batches 2, 4 and 5: batches 1 and 3 stay local
    assert trainer.step == 6 and trainer.ddp.local == 4


def test_a_hook_gets_its_own_saved_state_back_on_resume(tmp_path):
    cfg = tiny_config(tmp_path / "run", early_stop={"patience": 1})
    cfg["train"].update(epochs=1)
    mlcore.build(cfg).fit()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert set(ckpt["hooks"]) == {"early_stop"} and ckpt["hooks"]["early_stop"]["bad_epochs"] == 0
    ckpt["hooks"]["early_stop"] = {"best": 2.0, "bad_epochs": 0}  # no mAP can beat it
    torch.save(ckpt, last)
    summary = mlcore.build({**cfg, "train": {**cfg["train"], "epochs": 3}}).fit(resume=True)
    assert summary["reason"] == "early_stop"  # stopped after one epoch without improvement
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_plugin_sdk_names_are_importable_from_mlcore():
    for name in ("Plugin", "hookimpl", "MlcoreError", "ConfigError", "PluginError", "LabelInfo", "create_backbone",
                 "label_vectors", "load_weights", "WeightLayout", "freeze_backbone", "cached_index", "LabelIndex",
                 "SplitIndex", "targets_from_lists", "dataset_from_index", "decode_json", "cache_dir", "atomic_open",
                 "write_text", "create", "build"):
        assert getattr(mlcore, name) is not None, name
    assert {"optimizer", "scheduler"} <= set(mlcore.KINDS)
    assert {r.name for r in mlcore.list_plugins("optimizer")} >= {"adam", "adamw", "sgd", "rmsprop"}
    assert {r.name for r in mlcore.list_plugins("scheduler")} >= {"plateau", "step", "cosine", "onecycle", "none"}
    assert os.environ.get("MLCORE_DISABLE_PLUGINS") is None


def test_optimizer_and_scheduler_build_errors_name_their_plugin(tmp_path):
    def broken_opt(params, lr: float = 0.1):
        raise TypeError("no optimizer today")

    def broken_sched(optimizer):
        raise KeyError("no schedule today")

    reg = Registry()
    reg.register("optimizer", "broken_opt", broken_opt)
    reg.register("scheduler", "broken_sched", broken_sched)
    with pytest.raises(PluginError, match="optimizer 'broken_opt' failed to build: TypeError: no optimizer today"):
        mlcore.build(tiny_config(tmp_path / "a", optimizer="broken_opt"), registry=reg).fit()
    with pytest.raises(PluginError, match="scheduler 'broken_sched' failed to build: KeyError"):
        mlcore.build(tiny_config(tmp_path / "b", scheduler="broken_sched"), registry=reg).fit()
    with pytest.raises(PluginError, match="optimizer 'sgd' failed to build"):
        mlcore.create("optimizer", "sgd", params="not parameters")


def test_multistep_counts_its_milestones_from_the_end_of_the_warm_up(tmp_path):
    from mlcore.engine.optim import Schedule, build_optimizer

    cfg = mlcore.load_config({**tiny_config("x"), "optimizer": {"name": "sgd", "lr": 0.1},
                              "scheduler": {"name": "multistep", "milestones": [3, 8], "warmup_epochs": 2}})
    opt = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2))
    sched = Schedule(cfg.scheduler, opt, epochs=12, steps_per_epoch=1)
    lrs = []
    for _ in range(12):
        opt.step()
        sched.step_batch()
        sched.step_epoch({})
        lrs.append(opt.param_groups[0]["lr"])
    # drops after epochs 5 and 10, as an official StepLR(5) stepped from the first epoch
    assert lrs == pytest.approx([0.0505] + [0.1] * 3 + [0.01] * 5 + [0.001] * 3)  # epoch 1: mid-warm-up
    with pytest.raises(mlcore.ConfigError, match="scheduler.milestones: must be increasing"):
        mlcore.load_config({**tiny_config("x"), "scheduler": {"name": "multistep", "milestones": [5, 3]}})
