"""What a checkpoint holds, and how a run comes back from one.

``last.pt`` (``full``) holds everything an exact resume needs: the model (and its EMA),
the optimizer, the schedule, the gradient scaler, a stateful loss, each hook plugin's
own state, every RNG state, and the run's :class:`Progress`. ``best.pt`` holds the
model, its EMA and the metadata only. Every checkpoint carries the class names, the
model's name and the resolved config, so it explains itself, and ends with a checksum
(:mod:`mlcore.engine.checkpoint`) that every load verifies: a ``last.pt`` damaged on disk
stops ``--resume`` with a message saying whether ``best.pt`` beside it is intact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint_config import label_info_entry
from ..errors import MlcoreError
from ..weights import load_state, safe_load, verify_checkpoint
from .checkpoint import FORMAT, VERSION, atomic_save, rng_state, set_rng_state


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of a metrics dict (``ap_list`` and other lists left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


@dataclass
class Progress:
    """Where a run stands. ``epoch``: epochs completed; ``step``: optimizer steps taken;
    ``batch_in_epoch``: batches of the current epoch taken; the best epoch (numbered
    from 1) by the monitored metric, and its metrics. ``epoch_loss``: the mean training
    loss of an epoch whose training is done but whose validation is not (the
    ``last.pt`` written before validation), so a resume that redoes the validation
    reports it."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    best_metrics: dict = field(default_factory=dict)
    last_metrics: dict = field(default_factory=dict)
    bad_images: int = 0
    epoch_loss: float | None = None

    def update_best(self, metrics: dict, monitor: str, mode: str) -> bool:
        """Note ``metrics`` of the epoch just completed; True when it is the best so far."""
        score = metrics.get(monitor)
        if score is None or not math.isfinite(float(score)):
            return False
        if self.best_score is not None and not (float(score) > self.best_score if mode == "max"
                                                else float(score) < self.best_score):
            return False
        self.best_score, self.best_epoch, self.best_metrics = float(score), self.epoch, metrics
        return True

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_metrics": _plain_metrics(self.best_metrics), "metrics": scalar_metrics(self.last_metrics),
                "bad_images": self.bad_images, "epoch_loss": self.epoch_loss}

    def load(self, ckpt: dict) -> None:
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.best_score, self.best_epoch = ckpt["best_score"], ckpt["best_epoch"]
        self.best_metrics = dict(ckpt.get("best_metrics") or {})
        self.last_metrics = dict(ckpt.get("metrics") or {})
        self.bad_images = int(ckpt.get("bad_images", 0))
        loss = ckpt.get("epoch_loss")
        self.epoch_loss = float(loss) if loss is not None else None


def _plain_metrics(metrics: dict) -> dict:
    """Numbers and lists of numbers (``ap_list``): what a weights-only checkpoint can hold."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) or isinstance(v, list) and all(isinstance(x, (int, float, type(None)))
                                                                          for x in v)}


class TrainingState:
    """The stateful parts of one run, saved together and restored together."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def checkpoint(self, full: bool) -> dict:
        t = self.trainer
        exp = t.experiment
        state = {"format": FORMAT, "version": VERSION, "model": exp.model.state_dict(),
                 "model_name": t.config.model.name, "classes": list(exp.classes), "config": t.config.resolved(),
                 **t.progress.as_dict()}
        info = label_info_entry(exp.label_info)  # so predict/export need no dataset (models built from it)
        if info is not None:
            state["label_info"] = info
        if t.ema is not None:
            state["ema"] = t.ema.state_dict()
        if full:
            loss_state = getattr(exp.loss, "state_dict", None)
            state.update(optimizer=t.optimizer.state_dict(), scheduler=t.schedule.state_dict(), rng=rng_state(),
                         hooks=t.hooks.state_dict(t), loss=loss_state() if callable(loss_state) else None,
                         scaler=t.scaler.state_dict() if t.scaler is not None else None)
        return state

    def save(self, path: Path, full: bool) -> None:
        atomic_save(self.checkpoint(full), path)

    def restore(self, path: Path) -> None:
        """Continue from ``path`` (a ``last.pt``), exactly where it was written."""
        t = self.trainer
        exp = t.experiment
        try:
            ckpt = safe_load(path)  # verified against its checksum
        except MlcoreError as exc:
            raise MlcoreError(f"cannot resume: {exc}.\n{what_is_left(Path(path), t.config.path)}") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
            raise MlcoreError(f"{str(path)!r} is not a resumable mlcore checkpoint")
        if list(ckpt["classes"]) != list(exp.classes):
            raise MlcoreError(f"{str(path)!r} was trained on other labels ({len(ckpt['classes'])} classes) "
                              f"than this config's dataset ({len(exp.classes)})")
        load_state(exp.model, ckpt["model"], str(path))
        if t.ema is not None:
            if "ema" in ckpt:
                t.ema.load_state_dict(ckpt["ema"])
            else:  # EMA switched on for the rest of a run: it starts from the weights
                t.ema.load_state_dict(exp.model.state_dict())
        t.optimizer.load_state_dict(ckpt["optimizer"])
        t.schedule.load_state_dict(ckpt["scheduler"])
        if t.scaler is not None and ckpt.get("scaler"):
            t.scaler.load_state_dict(ckpt["scaler"])
        t.progress.load(ckpt)
        t.hooks.load_state_dict(t, ckpt.get("hooks") or {})
        if ckpt.get("loss") is not None and hasattr(exp.loss, "load_state_dict"):
            exp.loss.load_state_dict(ckpt["loss"])
        set_rng_state(ckpt["rng"])


def what_is_left(last: Path, config: Any = None) -> str:
    """What a run whose ``last.pt`` cannot be read still has: whether ``best.pt`` beside
    it is intact (its checksum verified), damaged too, or missing. ``config``: the config
    file, for the command that evaluates ``best.pt``."""
    best = last.with_name("best.pt")
    if not best.is_file():
        return (f"There is no {str(best)!r} either: nothing of this run can be used; "
                f"train again without --resume")
    try:
        verified = verify_checkpoint(best)
        if not verified:  # written before checksums: reading it whole is the check left
            safe_load(best)
    except MlcoreError as exc:
        return f"{str(best)!r} beside it is damaged too ({exc}); train again without --resume"
    state = ("is intact (its checksum matches)" if verified
             else "reads correctly (it predates checksums, so it could not be verified)")
    evaluate = f"mlcore evaluate {config or 'CONFIG'} --checkpoint {best}"
    return (f"{str(best)!r} beside it {state}: it holds the best epoch's model weights but no optimizer "
            f"state, so training cannot continue from it; evaluate it with `{evaluate}`, or start a new run "
            f"from its weights (model.weights) — copy it out of this folder first, since starting again "
            f"here (--overwrite) removes it")
