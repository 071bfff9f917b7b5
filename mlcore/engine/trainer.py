"""The training loop: one loop for every model, extended through lifecycle hooks.

Per epoch: train over the shuffled train split, validate, step the scheduler, let hooks
react (early stopping sets ``should_stop``), write ``checkpoints/last.pt`` and, when the
monitored score improved, ``checkpoints/best.pt``. With ``train.checkpoint_every`` steps
``last.pt`` is also written mid-epoch; ``--resume`` continues from it exactly (same
batches, same augmentation, same RNG states). SIGINT/SIGTERM finish the current step,
save, and stop with the command that resumes.
"""
from __future__ import annotations

import math
import random
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import torch

from .. import hookspecs
from ..data.images import BadImageError
from ..errors import MlcoreError, PluginError, TrainingInterrupted
from ..files import write_text
from .checkpoint import FORMAT, VERSION, atomic_save, load_model_weights, rng_state, safe_load, set_rng_state
from .device import autocast
from .distributed import Dist, setup
from .ema import EMA
from .evaluation import infer
from .loading import make_loader
from .optim import Scheduler, build_optimizer


def make_hook_manager(specs: list) -> pluggy.PluginManager:
    """A pluggy manager holding one fresh instance of every active hook plugin."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for spec in specs:
        try:
            obj = spec.plugin.instantiate(spec.cfg)
            pm.register(obj, name=spec.name)
        except Exception as exc:
            raise PluginError(f"hook plugin '{spec.name}' failed to start: {type(exc).__name__}: {exc}") from exc
    return pm


class CompiledOrEager:
    """``torch.compile(module)``; if compiling fails (no compiler, an unsupported op —
    which shows at the first call), warn once and run the module as it is."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        try:
            self.compiled = torch.compile(module)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc: Exception) -> None:
        warnings.warn(f"train.compile: torch.compile does not work here ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}); training uncompiled", stacklevel=3)
        self.compiled = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as exc:  # compilation happens here, at the first call
                self._fallback(exc)
        return self.module(x)


def environment() -> str:
    """Versions and the device, so a run folder says what produced it."""
    import json
    import platform
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cuda = torch.cuda.is_available()
    return json.dumps({
        "python": platform.python_version(), "platform": platform.platform(),
        **{d: version(d) for d in ("mlcore", "torch", "torchvision", "timm", "numpy")},
        "cuda": torch.version.cuda if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "threads": torch.get_num_threads(),
    }, indent=1) + "\n"


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of a metrics dict (``ap_list`` and other lists left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


class Trainer:
    """Trains ``experiment.model`` as its config says; ``fit()`` returns the best metrics."""

    def __init__(self, experiment: Any):
        self.experiment = experiment
        self.config = experiment.config
        self.output_dir = Path(self.config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.device = experiment.device
        self.monitor = "mAP"
        self.epoch = 0              # epochs completed
        self.step = 0               # optimizer steps taken
        self.batch_in_epoch = 0     # batches of the current epoch already taken
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict = {}
        self.last_metrics: dict = {}
        self.bad_images = 0
        self.last_scores = None
        self.should_stop = False
        self.is_main = True
        self.dist = Dist()
        self.ema: EMA | None = None
        self.scaler = None
        self._signal: int | None = None

    # -- state ---------------------------------------------------------------------------
    def _checkpoint(self, full: bool) -> dict:
        exp = self.experiment
        state = {
            "format": FORMAT, "version": VERSION, "model": exp.model.state_dict(),
            "model_name": self.config.model.name, "classes": list(exp.classes),
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
            "best_score": self.best_score, "best_epoch": self.best_epoch,
            "metrics": scalar_metrics(self.last_metrics), "config": self.config.resolved(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if full:
            hook_states = {}
            for item in self.hooks.hook.mlcore_state_dict(trainer=self):
                if item:
                    hook_states[item[0]] = item[1]
            loss_state = getattr(exp.loss, "state_dict", None)
            state.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         rng=rng_state(), hooks=hook_states, bad_images=self.bad_images,
                         loss=loss_state() if callable(loss_state) else None,
                         scaler=self.scaler.state_dict() if self.scaler is not None else None)
        return state

    def save(self, name: str = "last.pt", full: bool = True) -> Path:
        """Write a checkpoint (rank 0 only: every rank holds the same state)."""
        path = self.checkpoint_dir / name
        if self.is_main:
            atomic_save(self._checkpoint(full), path)
        return path

    def _restore(self, path: Path) -> None:
        ckpt = safe_load(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
            raise MlcoreError(f"{str(path)!r} is not a resumable mlcore checkpoint")
        if list(ckpt["classes"]) != list(self.experiment.classes):
            raise MlcoreError(f"{str(path)!r} was trained on other labels ({len(ckpt['classes'])} classes) "
                              f"than this config's dataset ({len(self.experiment.classes)})")
        load_model_weights(self.experiment.model, ckpt["model"], str(path))
        if self.ema is not None:
            if "ema" in ckpt:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # EMA switched on for the rest of a run: it starts from the weights
                self.ema.load_state_dict(self.experiment.model.state_dict())
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.best_score, self.best_epoch = ckpt["best_score"], ckpt["best_epoch"]
        self.last_metrics = dict(ckpt.get("metrics") or {})
        self.bad_images = int(ckpt.get("bad_images", 0))
        self.hooks.hook.mlcore_load_state_dict(trainer=self, states=ckpt.get("hooks") or {})
        if ckpt.get("loss") is not None and hasattr(self.experiment.loss, "load_state_dict"):
            self.experiment.loss.load_state_dict(ckpt["loss"])
        set_rng_state(ckpt["rng"])

    # -- signals -------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Save and stop after the current step, as SIGINT/SIGTERM do (hooks may call it)."""
        self._signal = signal.SIGTERM

    def _on_signal(self, signum, frame) -> None:
        self._signal = signum

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    # -- the loop ------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        cfg, exp = self.config, self.experiment
        tc = cfg.train
        last = self.checkpoint_dir / "last.pt"
        if resume and not last.is_file():
            raise MlcoreError(f"nothing to resume: {str(last)!r} does not exist "
                              f"(run without --resume to start training)")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise MlcoreError(f"output_dir {str(self.output_dir)!r} is a file, not a folder")
        self.dist = d = setup(tc.dist_timeout)
        self.is_main = d.is_main
        if self.device.type == "cuda" and self.device.index is None:  # this rank's GPU, by index
            self.device = exp.device = torch.device("cuda", torch.cuda.current_device())
        if tc.amp == "fp16" and self.device.type != "cuda":
            raise MlcoreError("train.amp: fp16 needs a CUDA device (its gradient scaler is CUDA-only); "
                              "use bf16 on the CPU")
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed % 2**32)
        random.seed(tc.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not tc.deterministic
            torch.backends.cudnn.deterministic = tc.deterministic
        model = exp.model.to(self.device)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if tc.sync_bn and d.enabled:
            model = exp.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_set = exp.train_set
        exp.val_set  # built (and checked against the train classes) before anything is written
        loss_fn = exp.loss
        loader, sampler = make_loader(train_set, batch_size=tc.batch_size, num_workers=tc.num_workers,
                                      seed=tc.seed, shuffle=True, pin_memory=self.device.type == "cuda",
                                      rank=d.rank, world=d.world)
        batches = math.ceil(sampler.per_rank() / tc.batch_size)
        self.optimizer = build_optimizer(cfg.optimizer, model)
        self.scheduler = Scheduler(cfg.scheduler, self.optimizer, tc.epochs, math.ceil(batches / tc.accumulate))
        self.monitor = self.scheduler.monitor or "mAP"
        self.monitor_mode = getattr(cfg.scheduler, "mode", "max")
        self.ema = EMA(model, tc.ema) if tc.ema else None
        self.scaler = torch.amp.GradScaler("cuda") if tc.amp == "fp16" else None
        self.hooks = make_hook_manager(cfg.hooks)
        if resume:
            self._restore(last)  # every rank reads the same checkpoint
        if d.is_main:
            self._prepare_output_dir()
            if resume:
                self._drop_metrics_after(self.step)
        forward = self._training_forward(model)
        normalize = exp.normalizer
        memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
        hook = self.hooks.hook
        previous = self._install_signals()
        reason = "finished"
        try:
            hook.mlcore_train_start(trainer=self)
            while self.epoch < tc.epochs and not self.should_stop:
                epoch = self.epoch
                sampler.set_epoch(epoch, self.batch_in_epoch * tc.batch_size)
                left = math.ceil(len(sampler) / tc.batch_size)
                hook.mlcore_epoch_start(trainer=self, epoch=epoch, num_steps=math.ceil(left / tc.accumulate))
                model.train()
                bad_before = self.bad_images
                loss_sum = torch.zeros((), device=self.device)
                self.optimizer.zero_grad(set_to_none=True)
                for i, (images, targets, bad, _) in enumerate(loader):
                    self._count_bad(bad)
                    x = normalize(images.to(self.device, non_blocking=True)).contiguous(memory_format=memory_format)
                    y = targets.to(self.device, non_blocking=True)
                    with self.autocast():
                        logits = forward(x)
                    loss = loss_fn(logits.float(), y)  # losses and their reductions in float32
                    scaled = loss / tc.accumulate if tc.accumulate > 1 else loss
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
                    loss_sum += loss.detach()
                    self.batch_in_epoch += 1
                    end = i == left - 1
                    if self.batch_in_epoch % tc.accumulate and not end:
                        continue  # gradients add up until the next optimizer step
                    self._optimizer_step(model)
                    save_now = bool(tc.checkpoint_every) and self.step % tc.checkpoint_every == 0 and not end
                    logged = None
                    # the loss is read (a device sync) only when logged or before a checkpoint, so
                    # that a non-finite loss stops the run before it reaches a checkpoint
                    if self.step % tc.log_every == 0 or end or save_now or self._signal is not None:
                        logged = float(loss.detach())
                        if not math.isfinite(logged):
                            raise MlcoreError(self._nan_message(logged))
                    hook.mlcore_train_step_end(trainer=self, step=self.step, loss=logged, lr=self.lr)
                    if self._signal is not None:
                        path = self.save()
                        raise TrainingInterrupted(self._interrupted_message(path))
                    if save_now:
                        self.save()
                train_loss = float(loss_sum) / max(left, 1)
                if self.bad_images > bad_before:
                    warnings.warn(f"epoch {epoch + 1}: {self.bad_images - bad_before} unreadable training image(s) "
                                  f"replaced ({self.bad_images} in all)", stacklevel=2)
                metrics = self.validate()
                hook.mlcore_validation_end(trainer=self, epoch=epoch, metrics=metrics)
                self.scheduler.step_epoch(metrics)
                self.epoch += 1
                self.batch_in_epoch = 0
                improved = self._update_best(metrics)
                self._log_metrics(metrics)
                hook.mlcore_epoch_end(trainer=self, epoch=epoch, train_loss=train_loss, metrics=metrics)
                self.save()
                if improved:
                    self.save("best.pt", full=False)
                if self._signal is not None:
                    raise TrainingInterrupted(self._interrupted_message(last))
            reason = "early_stop" if self.should_stop else "finished"
        except TrainingInterrupted:
            reason = "interrupted"
            raise
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            hook.mlcore_train_end(trainer=self, reason=reason)
        return {"best_epoch": self.best_epoch, "best_score": self.best_score, "monitor": self.monitor,
                **self.best_metrics, "reason": reason}

    def autocast(self):
        """Mixed precision as ``train.amp`` says (a no-op when off)."""
        return autocast(self.config.train.amp, self.device)

    def _training_forward(self, model: torch.nn.Module):
        """The module the training step calls: DDP-wrapped across ranks, compiled if asked."""
        tc, d = self.config.train, self.dist
        wrapped = model
        if d.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DDP(model, device_ids=ids, find_unused_parameters=getattr(model, "find_unused_parameters", False))
        if tc.compile:
            return CompiledOrEager(wrapped)
        return wrapped

    def _optimizer_step(self, model: torch.nn.Module) -> None:
        tc = self.config.train
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.scheduler.step_batch()
        if self.ema is not None:
            self.ema.update(model)

    def validate(self) -> dict:
        """Metrics of the model on the validation split, and of its EMA (``ema_*``)."""
        exp, tc = self.experiment, self.config.train
        models = [("", exp.model)] + ([("ema_", self.ema.module)] if self.ema is not None else [])
        metrics: dict = {}
        for prefix, model in models:
            scores, m = infer(model, exp.val_set, device=self.device, normalize=exp.normalizer,
                              batch_size=tc.eval_batch_size or tc.batch_size, num_workers=tc.num_workers,
                              metrics=exp.metrics, skip_bad=self.config.data.on_bad_image == "skip",
                              dist=self.dist, autocast=self.autocast)
            metrics.update({prefix + k: v for k, v in m.items()})
            if not prefix:
                self.last_scores = scores  # N×C probabilities of the model, for hooks (PR curves…)
        self.last_metrics = metrics
        return metrics

    def _log_metrics(self, metrics: dict) -> None:
        """One line per evaluation in ``output_dir/metrics.jsonl``."""
        if not self.is_main:
            return
        import json

        row = {"epoch": self.epoch, "step": self.step, "lr": self.lr, **scalar_metrics(metrics)}
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in row.items()}) + "\n")

    def _drop_metrics_after(self, step: int) -> None:
        """On resume, forget evaluations logged after the checkpoint (they will be redone)."""
        import json

        path = self.output_dir / "metrics.jsonl"
        if path.is_file():
            keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in keep))

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _update_best(self, metrics: dict) -> bool:
        score = metrics.get(self.monitor)
        if score is None or not math.isfinite(float(score)):
            return False
        if self.best_score is None:
            better = True
        elif self.monitor_mode == "max":
            better = float(score) > self.best_score
        else:
            better = float(score) < self.best_score
        if better:
            self.best_score, self.best_epoch = float(score), self.epoch
            self.best_metrics = metrics
            return True
        return False

    def _prepare_output_dir(self) -> None:
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoint_dir.glob(".*.tmp-*"):  # left by a process killed mid-write
                stale.unlink(missing_ok=True)
            write_text(self.output_dir / "config.yaml", self.config.to_yaml())
            write_text(self.output_dir / "environment.json", environment())
        except OSError as exc:
            raise MlcoreError(f"cannot write to output_dir {str(self.output_dir)!r}: {exc.strerror or exc}") from exc

    def _count_bad(self, bad: list[str]) -> None:
        for path in bad:
            if not path:
                continue
            if self.config.data.on_bad_image == "error":
                raise BadImageError(path, "cannot be decoded (data.on_bad_image is 'error')")
            self.bad_images += 1
            warnings.warn(f"cannot decode training image {path!r}; replaced by another sample "
                          f"({self.bad_images} so far)", stacklevel=2)

    def _nan_message(self, value: float) -> str:
        last = self.checkpoint_dir / "last.pt"
        good = f"the last good checkpoint is {str(last)!r}" if last.is_file() else "no checkpoint was written yet"
        return (f"the loss became {value} at step {self.step} (epoch {self.epoch + 1}, lr {self.lr:g}); "
                f"training stopped; {good}")

    def _interrupted_message(self, path: Path) -> str:
        cfg = self.config.path or "CONFIG"
        return (f"interrupted at step {self.step} (epoch {self.epoch + 1}); saved {str(path)!r}. "
                f"Resume with: mlcore train {cfg} --set output_dir={self.output_dir} --resume")
