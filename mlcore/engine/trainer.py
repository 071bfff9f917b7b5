"""The training loop: one loop for every model, extended through lifecycle hooks.

Per epoch: train over the shuffled train split, write ``checkpoints/last.pt`` (so an
error during validation — one corrupt image — loses no training), validate, step the
schedule, let hooks react (early stopping sets ``should_stop``), write ``last.pt`` again
and, when the monitored metric (``train.monitor``/``train.mode``) improved,
``checkpoints/best.pt``. With ``train.checkpoint_every`` steps ``last.pt`` is also written
mid-epoch; ``--resume`` continues from it exactly (same batches, same augmentation, same
RNG states; a ``last.pt`` from before a validation redoes that validation).
SIGINT/SIGTERM finish the current step, save, and stop with the command that resumes.

Run folders: a folder that already holds a run is refused unless the run resumes it or
``overwrite`` starts it clean; a config without ``output_dir`` gets a new
``runs/<config name>/version_<n>`` per run (:mod:`mlcore.engine.run_folder`). A resume
is checked against the run's ``config.yaml`` (:mod:`mlcore.engine.resume`).

The parts live beside this file: the run folder's files (``run_folder.py``), what a
checkpoint holds (``training_state.py``), the hook plugins (``hooks.py``), signals
(``signals.py``), the optimizer and schedule (``optim.py``).
"""
from __future__ import annotations

import contextlib
import math
import random
import shlex
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.images import BadImageError
from ..errors import ConfigError, MlcoreError, TrainingInterrupted
from .compiled import CompiledOrEager
from .device import autocast
from .distributed import Dist, setup
from .ema import EMA
from .evaluation import infer
from .hooks import HookPlugins
from .loading import make_loader
from .optim import Schedule, build_optimizer
from .resume import check_resume_config, may_change
from .run_folder import RunFolder, new_version
from .signals import StopSignals
from .training_state import Progress, TrainingState, scalar_metrics


class Trainer:
    """Trains ``experiment.model`` as its config says; ``fit()`` returns the best metrics.

    Hooks may read ``epoch`` (epochs completed), ``step`` (optimizer steps taken),
    ``output_dir``, ``is_main``, ``config``, ``experiment``, ``last_scores`` (the last
    validation's N×C probabilities) and ``lr``, set ``should_stop``, or call
    ``interrupt()``.

    ``overwrite``: start clean in a folder that holds a run (its run files are removed).
    ``force``: resume even with config changes that break exactness. ``cli_flags``: None
    under the Python API; from the CLI, the flags a resume command repeats (``--nproc N``)
    — messages then say the command that resumes instead of ``exp.fit(resume=True)``.
    """

    def __init__(self, experiment: Any, *, overwrite: bool = False, force: bool = False,
                 cli_flags: list[str] | None = None):
        self.experiment = experiment
        self.config = experiment.config
        self.overwrite, self.force, self.cli_flags = overwrite, force, cli_flags
        self._new_folder_under: str | None = None
        self._use_folder(self.config.output_dir)
        self.device = experiment.device
        self.monitor = self.config.train.monitor
        self.monitor_mode = self.config.train.mode
        self.progress = Progress()
        self.state = TrainingState(self)
        self.signals = StopSignals()
        self.dist = Dist()
        self.is_main = True
        self.should_stop = False
        self.last_scores: torch.Tensor | None = None
        # made by _setup(), once the run's device and processes are known
        self.model: torch.nn.Module | None = None
        self.forward: Any = None
        self.ddp: Any = None
        self.loader: Any = None
        self.sampler: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: Schedule | None = None
        self.ema: EMA | None = None
        self.scaler: Any = None
        self.hooks: HookPlugins | None = None

    # -- what hooks read -----------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def interrupt(self) -> None:
        """Save and stop after the current step, as SIGINT/SIGTERM do (hooks may call it)."""
        self.signals.request()

    # -- the run -------------------------------------------------------------------------
    def _use_folder(self, path: Any) -> None:
        self.folder = RunFolder(path)
        self.output_dir = self.folder.root
        self.checkpoint_dir = self.folder.checkpoints

    def fit(self, resume: bool = False) -> dict:
        if resume and self.overwrite:
            raise MlcoreError(f"{self._how('resume')} continues the run in {str(self.output_dir)!r} and "
                              f"{self._how('overwrite')} starts it clean: choose one")
        if self.force and not resume:
            raise MlcoreError(f"{self._how('force')} only applies to a resume (it accepts config changes "
                              f"that break exactness)")
        root = getattr(self.config, "auto_output_root", None)
        self._new_folder_under = root if root is not None and not resume else None
        try:
            return self._fit(resume)
        finally:  # the run lock (_setup) goes however fit ends
            self.folder.lock.close()

    def _choose_new_folder(self) -> None:
        """A config without ``output_dir``: this run's own ``version_<n>``, made by the main
        process and told to the other ranks."""
        path = str(new_version(self._new_folder_under)) if self.dist.is_main else None
        if self.dist.enabled:
            box = [path]
            torch.distributed.broadcast_object_list(box, src=0)
            path = box[0]
        self.config.output_dir = path
        self._use_folder(path)
        if self.dist.is_main:
            self.folder.lock.adopt(path)  # removed again if the run stops before writing anything
            print(f"run folder: {path}", flush=True)

    def _fit(self, resume: bool) -> dict:
        self._setup(resume)
        hooks, tc = self.hooks, self.config.train
        reason = "error"
        with self.signals:
            try:
                hooks.hook.mlcore_train_start(trainer=self)
                while self.epoch < tc.epochs and not self.should_stop:
                    self._run_epoch()
                reason = "early_stop" if self.should_stop else "finished"
            except TrainingInterrupted:
                reason = "interrupted"
                raise
            finally:
                hooks.train_end(self, reason)
        p = self.progress
        summary = {"best_epoch": p.best_epoch, "best_score": p.best_score, "monitor": self.monitor,
                   **p.best_metrics, "reason": reason}
        if self.is_main:  # the run's result, the same from the CLI and the Python API
            self.folder.write_result(summary, self.experiment.classes)
        return summary

    def _setup(self, resume: bool) -> None:
        """Everything the loop needs, checked before anything is written."""
        cfg, exp = self.config, self.experiment
        tc = cfg.train
        if resume and not self.folder.last.is_file():
            raise MlcoreError(f"nothing to resume: {str(self.folder.last)!r} does not exist "
                              f"(run without --resume to start training)")
        self.folder.check_usable()
        if tc.amp == "fp16" and self.device.type != "cuda":  # a config error: before any folder is touched
            raise MlcoreError("train.amp: fp16 needs a CUDA device (its gradient scaler is CUDA-only); "
                              "use bf16 on the CPU")
        self.dist = d = setup(tc.dist_timeout, self.device)
        self.is_main = d.is_main
        if self._new_folder_under is not None:
            self._choose_new_folder()
        if d.is_main:  # one run per folder, taken before anything there is read or written
            self.folder.lock.acquire()  # (the other ranks write nothing)
            if resume:
                self._check_resume_config()
            elif self.folder.holds_run() and not self.overwrite:
                raise MlcoreError(self._holds_run_message())
        if self.device.type == "cuda" and self.device.index is None:  # this rank's GPU, by index
            self.device = exp.device = torch.device("cuda", torch.cuda.current_device())
        _seed_everything(tc.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not tc.deterministic
            torch.backends.cudnn.deterministic = tc.deterministic
        model = exp.model.to(self.device)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if tc.sync_bn and d.enabled:
            model = exp.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        exp.val_set  # built (and checked against the train classes) before anything is written
        self._check_unknown_labels()
        self.loader, self.sampler = make_loader(exp.train_set, batch_size=tc.batch_size, num_workers=tc.num_workers,
                                                seed=tc.seed, shuffle=True, pin_memory=self.device.type == "cuda",
                                                rank=d.rank, world=d.world)
        batches = math.ceil(self.sampler.per_rank() / tc.batch_size)
        self.optimizer = build_optimizer(cfg.optimizer, model)
        self.schedule = Schedule(cfg.scheduler, self.optimizer, tc.epochs, math.ceil(batches / tc.accumulate))
        self.ema = EMA(model, tc.ema) if tc.ema else None
        self.scaler = torch.amp.GradScaler("cuda") if tc.amp == "fp16" else None
        self.hooks = HookPlugins(cfg.hooks)
        if resume:
            self.state.restore(self.folder.last)  # every rank reads the same checkpoint
        if d.is_main:
            if self.overwrite and not resume:  # as late as possible: a setup error above keeps the old run
                removed = self.folder.clear()
                if removed:
                    print(f"{self._how('overwrite')}: removed the previous run's {', '.join(removed)} from "
                          f"{str(self.output_dir)!r}", flush=True)
            self.folder.prepare(cfg.to_yaml())
            if resume:
                self.folder.drop_metrics_after(self.step, self.epoch)
        self.forward = self._training_forward(model)

    def _check_unknown_labels(self) -> None:
        """A training set with unknown labels (-1) under ``data.unknown_labels: ignore``
        needs a loss that leaves them out: one that says so (``handles_unknown``). The
        count comes from the dataset's ``num_unknown`` where it has one, else ``targets``."""
        if self.config.data.unknown_labels != "ignore":
            return
        ds = self.experiment.train_set
        unknown = getattr(ds, "num_unknown", None)  # a sparse dataset counts them itself
        if unknown is None:
            targets = getattr(ds, "targets", None)
            unknown = int((np.asarray(targets) < 0).sum()) if targets is not None and np.size(targets) else 0
        loss = self.experiment.loss
        if unknown and not getattr(loss, "handles_unknown", False):
            raise ConfigError(f"loss: the training set has {unknown} unknown label(s) (-1) and loss "
                              f"'{self.config.loss.name}' does not say it leaves them out (handles_unknown); "
                              f"set data.unknown_labels: negative, or use a loss that handles them")

    def _training_forward(self, model: torch.nn.Module) -> Any:
        """The module the training step calls: DDP-wrapped across ranks, compiled if asked."""
        wrapped = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = self.ddp = DDP(model, device_ids=ids,
                                     find_unused_parameters=getattr(model, "find_unused_parameters", False))
        return CompiledOrEager(wrapped) if self.config.train.compile else wrapped

    # -- one epoch -----------------------------------------------------------------------
    def _run_epoch(self) -> None:
        tc, p, hook = self.config.train, self.progress, self.hooks.hook
        epoch = p.epoch + 1
        self.sampler.set_epoch(p.epoch, p.batch_in_epoch * tc.batch_size)
        left = math.ceil(len(self.sampler) / tc.batch_size)
        hook.mlcore_epoch_start(trainer=self, epoch=epoch, num_steps=math.ceil(left / tc.accumulate))
        self.model.train()
        bad_before = p.bad_images
        loss_sum = torch.zeros((), device=self.device)
        resumed_before_validation = left == 0 and p.epoch_loss is not None  # its training is done
        self.optimizer.zero_grad(set_to_none=True)
        # (a resume whose epoch is trained, not validated, starts no loader: it draws no RNG)
        for i, (images, targets, bad, _) in enumerate(self.loader if left else ()):
            self._count_bad(bad)
            end = i == left - 1
            steps = (p.batch_in_epoch + 1) % tc.accumulate == 0 or end
            loss = self._forward_backward(images, targets, sync=steps)
            loss_sum += loss.detach()
            p.batch_in_epoch += 1
            if steps:  # else gradients add up until the next optimizer step
                self._optimizer_step()
                self._after_step(loss, end)
        if p.bad_images > bad_before:
            warnings.warn(f"epoch {epoch}: {p.bad_images - bad_before} unreadable training image(s) "
                          f"replaced ({p.bad_images} in all)", stacklevel=2)
        train_loss = p.epoch_loss if resumed_before_validation else float(loss_sum) / max(left, 1)
        self._end_epoch(epoch, train_loss)

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, sync: bool) -> torch.Tensor:
        """One batch's loss and gradients. Under DDP, micro-steps that do not step the
        optimizer keep their gradients local (``no_sync``): one all-reduce per step."""
        tc = self.config.train
        memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
        x = self.experiment.normalizer(images.to(self.device, non_blocking=True)).contiguous(
            memory_format=memory_format)
        y = targets.to(self.device, non_blocking=True)
        if self.config.data.unknown_labels == "negative":
            y = y.clamp(min=0)  # unknown (-1) as negative
        local = self.ddp.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext()
        with local:
            with self.autocast():
                logits = self.forward(x)
            loss = self.experiment.loss(logits.float(), y)  # losses and their reductions in float32
            scaled = loss / tc.accumulate if tc.accumulate > 1 else loss
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss

    def _optimizer_step(self) -> None:
        tc = self.config.train
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        self.schedule.step_batch()
        if self.ema is not None:
            self.ema.update(self.model)

    def _after_step(self, loss: torch.Tensor, end: bool) -> None:
        """Report the step; save mid-epoch when due; stop on a signal or a non-finite loss."""
        tc, step = self.config.train, self.step
        save_now = bool(tc.checkpoint_every) and step % tc.checkpoint_every == 0 and not end
        logged = None
        # the loss is read (a device sync) only when logged or before a checkpoint, so that
        # a non-finite loss stops the run before it reaches a checkpoint
        if step % tc.log_every == 0 or end or save_now or self.signals.received is not None:
            logged = float(loss.detach())
            if not math.isfinite(logged):
                raise MlcoreError(self._nan_message(logged))
        self.hooks.hook.mlcore_train_step_end(trainer=self, step=step, loss=logged, lr=self.lr)
        if self.signals.received is not None:
            raise TrainingInterrupted(self._interrupted_message(self.save()))
        if save_now:
            self.save()

    def _end_epoch(self, epoch: int, train_loss: float) -> None:
        p, hook = self.progress, self.hooks.hook
        p.epoch_loss = train_loss
        # the epoch's training is saved before validation, which may fail (a corrupt image
        # under data.on_bad_image: error); best.pt waits for the validation's verdict
        before = self.save()
        try:
            metrics = self.validate()
        except MlcoreError as exc:
            raise MlcoreError(f"{exc}\n{self._validation_failed(epoch, before)}") from exc
        except Exception as exc:
            exc.add_note(self._validation_failed(epoch, before))
            raise
        hook.mlcore_validation_end(trainer=self, epoch=epoch, metrics=metrics)
        self.schedule.step_epoch(metrics)
        p.epoch, p.batch_in_epoch, p.epoch_loss = epoch, 0, None
        improved = p.update_best(metrics, self.monitor, self.monitor_mode)
        if self.is_main:
            self.folder.log_metrics({"epoch": epoch, "step": self.step, "lr": self.lr, "train_loss": train_loss,
                                     **scalar_metrics(metrics)})
        hook.mlcore_epoch_end(trainer=self, epoch=epoch, train_loss=train_loss, metrics=metrics)
        last = self.save()
        if improved:
            self.save("best.pt", full=False)
        if self.signals.received is not None:
            raise TrainingInterrupted(self._interrupted_message(last))

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
                self.last_scores = scores
        self.progress.last_metrics = metrics
        return metrics

    def save(self, name: str = "last.pt", full: bool = True):
        """Write a checkpoint (rank 0 only: every rank holds the same state)."""
        path = self.checkpoint_dir / name
        if self.is_main:
            self.state.save(path, full)
        return path

    def autocast(self):
        """Mixed precision as ``train.amp`` says (a no-op when off)."""
        return autocast(self.config.train.amp, self.device)

    # -- bad input and messages ----------------------------------------------------------
    def _count_bad(self, bad: list[str]) -> None:
        for path in bad:
            if not path:
                continue
            if self.config.data.on_bad_image == "error":
                raise BadImageError(path, "cannot be decoded (data.on_bad_image is 'error')")
            self.progress.bad_images += 1
            warnings.warn(f"cannot decode training image {path!r}; replaced by another sample "
                          f"({self.progress.bad_images} so far)", stacklevel=2)

    def _nan_message(self, value: float) -> str:
        last = self.folder.last
        good = f"the last good checkpoint is {str(last)!r}" if last.is_file() else "no checkpoint was written yet"
        return (f"the loss became {value} at step {self.step} (epoch {self.epoch + 1}, lr {self.lr:g}); "
                f"training stopped; {good}")

    def _how(self, what: str) -> str:
        """How to ask for ``what`` (resume, overwrite, force) under the CLI or the API."""
        if self.cli_flags is None:
            return {"resume": "fit(resume=True)", "overwrite": "fit(overwrite=True)",
                    "force": "fit(resume=True, force=True)"}[what]
        return f"--{what}"

    def resume_command(self) -> str:
        """Exactly what resumes this run: the CLI command on the run's own ``config.yaml``
        (which holds every ``--set`` it was started with), or the API call."""
        if self.cli_flags is None:
            return (f"exp.fit(resume=True) (in a new session: "
                    f"mlcore.build({str(self.output_dir / 'config.yaml')!r}).fit(resume=True))")
        folder = self.output_dir.resolve()  # absolute: the command works from any working directory
        where = [] if Path(self.config.output_dir).is_absolute() else ["--set", f"output_dir={folder}"]
        return shlex.join(["mlcore", "train", str(folder / "config.yaml"), "--resume", *self.cli_flags, *where])

    def _interrupted_message(self, path) -> str:
        return (f"interrupted at step {self.step} (epoch {self.epoch + 1}); saved {str(path)!r}. "
                f"Resume with: {self.resume_command()}")

    def _validation_failed(self, epoch: int, path) -> str:
        return (f"validation of epoch {epoch} failed; the epoch's training is saved in {str(path)!r}. Fix the "
                f"cause (a corrupt image: replace it, or let validation skip it with data.on_bad_image: skip, "
                f"which a resume may change) and resume with: {self.resume_command()} — it validates epoch "
                f"{epoch} again and goes on")

    def _holds_run_message(self) -> str:
        found = [n for n in ("config.yaml", "metrics.jsonl", "checkpoints") if (self.output_dir / n).exists()]
        return (f"output_dir {str(self.output_dir)!r} already holds a run ({', '.join(found)}); a new run there "
                f"would mix its results with that one's. Continue that run with {self._how('resume')}, or start "
                f"clean with {self._how('overwrite')} (removes that run's files), or give this run another "
                f"output_dir")

    def _check_resume_config(self) -> None:
        """The resuming config against the run's ``config.yaml``; say what changed."""
        if self.cli_flags is None:
            how = {"resume": f"mlcore.build({str(self.output_dir / 'config.yaml')!r}).fit(resume=True)",
                   "force": "pass fit(resume=True, force=True)"}
        else:
            how = {"resume": self.resume_command(), "force": "pass --force"}
        changes = check_resume_config(self.output_dir, self.config.resolved(), force=self.force, how=how)
        if not changes:
            return
        forced = [c for c in changes if not may_change(c.key)]
        if forced:
            warnings.warn(f"resuming {str(self.output_dir)!r} with changes that break exactness (forced): "
                          f"{'; '.join(map(str, forced))}", stacklevel=2)
        print(f"resuming {str(self.output_dir)!r} with changes to its config.yaml: "
              f"{'; '.join(map(str, changes))}", flush=True)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
