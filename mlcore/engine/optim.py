"""Optimizers and schedulers from the checked ``optimizer``/``scheduler`` sections."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..sections import TORCH_OPTIMIZERS, NoSchedulerSection, OneCycleSection, PlateauSection

_NOT_TORCH = {"name", "backbone_lr_mult"}


def param_groups(model: torch.nn.Module, base_lr: float, backbone_mult: float) -> list[dict]:
    """Trainable parameters; those under ``model.backbone`` get ``base_lr × backbone_mult``."""
    backbone = getattr(model, "backbone", None)
    if backbone_mult == 1.0 or not isinstance(backbone, torch.nn.Module):
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    inner = {id(p) for p in backbone.parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in inner]
    body = [p for p in backbone.parameters() if p.requires_grad]
    return [g for g in ({"params": head}, {"params": body, "lr": base_lr * backbone_mult}) if g["params"]]


def build_optimizer(cfg: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _NOT_TORCH}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls = getattr(torch.optim, TORCH_OPTIMIZERS[cfg.name])
    return cls(param_groups(model, cfg.lr, cfg.backbone_lr_mult), **kwargs)


class Scheduler:
    """One interface over torch's schedulers and a linear warm-up.

    ``step_batch()`` after every optimizer step (warm-up, OneCycle), ``step_epoch(metrics)``
    after every validation (plateau on its monitor, step, cosine).
    """

    def __init__(self, cfg: Any, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        self.cfg = cfg
        self.optimizer = optimizer
        self.monitor = getattr(cfg, "monitor", None)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.warmup_steps = getattr(cfg, "warmup_epochs", 0) * steps_per_epoch
        self.warmup_epochs = getattr(cfg, "warmup_epochs", 0)
        self.steps = 0
        self.epochs_done = 0
        lr = torch.optim.lr_scheduler
        if isinstance(cfg, PlateauSection):
            self.inner = lr.ReduceLROnPlateau(optimizer, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience,
                                              threshold=cfg.threshold, min_lr=cfg.min_lr)
        elif isinstance(cfg, OneCycleSection):
            self.inner = lr.OneCycleLR(optimizer, max_lr=self.base_lrs, total_steps=max(1, epochs * steps_per_epoch),
                                       pct_start=cfg.pct_start, div_factor=cfg.div_factor,
                                       final_div_factor=cfg.final_div_factor, anneal_strategy=cfg.anneal_strategy)
        elif isinstance(cfg, NoSchedulerSection):
            self.inner = None
        elif cfg.name == "step":
            self.inner = lr.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        elif cfg.name == "cosine":
            t_max = max(1, (cfg.t_max or epochs) - self.warmup_epochs)
            self.inner = lr.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=cfg.eta_min)
        else:  # the config check only lets known names through
            raise AssertionError(cfg.name)
        if self.warmup_steps:
            self._set_warmup(0)

    def _set_warmup(self, step: int) -> None:
        start = self.cfg.warmup_factor
        factor = start + (1 - start) * min(step, self.warmup_steps) / self.warmup_steps
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor

    def step_batch(self) -> None:
        self.steps += 1
        if isinstance(self.cfg, OneCycleSection):
            if self.steps < self.inner.total_steps:
                self.inner.step()
        elif self.steps <= self.warmup_steps:
            self._set_warmup(self.steps)

    def step_epoch(self, metrics: dict) -> None:
        self.epochs_done += 1
        if self.inner is None or isinstance(self.cfg, OneCycleSection) or self.epochs_done <= self.warmup_epochs:
            return
        if self.monitor is not None:
            value = metrics.get(self.monitor)
            if value is None:
                return  # nothing to judge (e.g. no validation this epoch)
            self.inner.step(float(value))
        else:
            self.inner.step()

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict() if self.inner is not None else {}, "steps": self.steps,
                "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        if self.inner is not None and state.get("inner"):
            self.inner.load_state_dict(state["inner"])
        self.steps, self.epochs_done = int(state.get("steps", 0)), int(state.get("epochs_done", 0))
