"""The optimizer and the learning-rate schedule of a run, from their plugin sections.

The framework makes the model's parameter groups (the backbone's scaled by the
section's ``backbone_lr_mult``) and hands them to the optimizer plugin; it wraps the
scheduler plugin's torch scheduler in :class:`Schedule`, which adds the linear warm-up
and steps it at the interval it asks for (see ``mlcore_builtins.schedulers``' docstring
for the scheduler contract).
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import MlcoreError
from ..plugin import build_named


def param_groups(model: torch.nn.Module, split_backbone: bool) -> tuple[list[dict], int | None]:
    """The trainable parameters as groups, and the index of the backbone's group (or
    None): with ``split_backbone``, those under ``model.backbone`` form a group of their own."""
    backbone = getattr(model, "backbone", None)
    if not split_backbone or not isinstance(backbone, torch.nn.Module):
        return [{"params": [p for p in model.parameters() if p.requires_grad]}], None
    inner = {id(p) for p in backbone.parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in inner]
    body = [p for p in backbone.parameters() if p.requires_grad]
    groups = [g for g in ({"params": head}, {"params": body}) if g["params"]]
    return groups, (len(groups) - 1 if body else None)


def build_optimizer(spec: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer plugin's optimizer over ``model``'s parameter groups."""
    mult = spec.common.backbone_lr_mult if spec.common is not None else 1.0
    groups, backbone = param_groups(model, mult != 1.0)
    optimizer = build_named(spec.plugin, spec.cfg, f"optimizer '{spec.name}' failed to build", params=groups)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise MlcoreError(f"optimizer '{spec.name}' gave a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    if backbone is not None:
        optimizer.param_groups[backbone]["lr"] *= mult
    return optimizer


class Schedule:
    """A scheduler plugin's torch scheduler behind one interface, with a linear warm-up.

    ``step_batch()`` after every optimizer step (warm-up; schedulers with
    ``interval = "step"``), ``step_epoch(metrics)`` after every validation (the rest; one
    with a ``monitor`` attribute gets that metric). The schedule proper spans the epochs
    after the warm-up.
    """

    def __init__(self, spec: Any, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        common = spec.common
        self.optimizer = optimizer
        self.warmup_epochs = common.warmup_epochs if common is not None else 0
        self.warmup_factor = common.warmup_factor if common is not None else 1.0
        self.warmup_steps = self.warmup_epochs * steps_per_epoch
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0
        self.epochs_done = 0
        self.inner = build_named(spec.plugin, spec.cfg, f"scheduler '{spec.name}' failed to build",
                                 optimizer=optimizer, epochs=max(1, epochs - self.warmup_epochs),
                                 steps_per_epoch=steps_per_epoch)
        if self.inner is not None and not callable(getattr(self.inner, "step", None)):
            raise MlcoreError(f"scheduler '{spec.name}' gave a {type(self.inner).__name__}, which has no step()")
        self.interval = getattr(self.inner, "interval", "epoch")
        self.monitor = getattr(self.inner, "monitor", None)
        if self.interval not in ("epoch", "step"):
            raise MlcoreError(f"scheduler '{spec.name}': interval must be 'epoch' or 'step', got {self.interval!r}")
        if self.interval == "step" and self.warmup_epochs:
            raise MlcoreError(f"scheduler.warmup_epochs: scheduler '{spec.name}' steps every optimizer step and "
                              f"brings its own warm-up; set warmup_epochs to 0")
        if self.warmup_steps:
            self._set_warmup(0)

    def _set_warmup(self, step: int) -> None:
        start = self.warmup_factor
        factor = start + (1 - start) * min(step, self.warmup_steps) / self.warmup_steps
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor

    def step_batch(self) -> None:
        self.steps += 1
        if self.inner is not None and self.interval == "step":
            total = getattr(self.inner, "total_steps", None)  # one-cycle refuses a step past its end
            if total is None or self.steps < total:
                self.inner.step()
        elif self.steps <= self.warmup_steps:
            self._set_warmup(self.steps)

    def step_epoch(self, metrics: dict) -> None:
        self.epochs_done += 1
        if self.inner is None or self.interval == "step" or self.epochs_done <= self.warmup_epochs:
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
