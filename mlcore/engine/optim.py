"""Optimizers and schedulers from the checked ``optimizer``/``scheduler`` sections."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..sections import TORCH_OPTIMIZERS, NoSchedulerSection, PlateauSection

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


class EpochScheduler:
    """One interface over torch's schedulers: ``step(metrics)`` once per epoch."""

    def __init__(self, cfg: Any, optimizer: torch.optim.Optimizer, epochs: int):
        self.cfg = cfg
        self.monitor = getattr(cfg, "monitor", None)
        lr = torch.optim.lr_scheduler
        if isinstance(cfg, PlateauSection):
            self.inner = lr.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.factor, patience=cfg.patience,
                                              threshold=cfg.threshold, min_lr=cfg.min_lr)
        elif isinstance(cfg, NoSchedulerSection):
            self.inner = None
        elif cfg.name == "step":
            self.inner = lr.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        elif cfg.name == "cosine":
            self.inner = lr.CosineAnnealingLR(optimizer, T_max=cfg.t_max or epochs, eta_min=cfg.eta_min)
        else:  # the config check only lets known names through
            raise AssertionError(cfg.name)

    def step(self, metrics: dict) -> None:
        if self.inner is None:
            return
        if self.monitor is not None:
            value = metrics.get(self.monitor)
            if value is None:
                return  # nothing to judge (e.g. no validation this epoch)
            self.inner.step(float(value))
        else:
            self.inner.step()

    def state_dict(self) -> dict:
        return self.inner.state_dict() if self.inner is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.inner is not None and state:
            self.inner.load_state_dict(state)
