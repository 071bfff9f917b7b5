"""Learning-rate schedulers: the seed's plateau, step, multistep, cosine, one-cycle, none.

Each build receives the ``optimizer``, the ``epochs`` the schedule spans (those after
the framework's warm-up) and ``steps_per_epoch`` (optimizer steps), and returns a torch
LR scheduler — or None for a constant rate. The framework steps it once per epoch after
validation, unless it says otherwise through two attributes of the returned object:
``interval = "step"`` (stepped after every optimizer step, as one-cycle is) and
``monitor = "<metric>"`` (``step()`` gets that validation metric, as plateau does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlcore import Plugin


@dataclass
class PlateauConfig:
    """The seed's: multiply the lr by ``factor`` when val ``monitor`` stops improving
    (``mode: max`` for scores such as mAP, ``min`` for losses)."""

    monitor: str = "mAP"
    mode: Literal["max", "min"] = "max"
    factor: float = 0.1
    patience: int = 2
    threshold: float = 1e-4
    min_lr: float = 0.0

    def validate(self):
        out = [(k, f"must be >= 0, got {getattr(self, k)}") for k in ("patience", "min_lr") if getattr(self, k) < 0]
        if not 0 < self.factor < 1:
            out.append(("factor", f"must be between 0 and 1, got {self.factor}"))
        return out


@dataclass
class StepConfig:
    """Multiply the lr by ``gamma`` every ``step_size`` epochs."""

    step_size: int = 10
    gamma: float = 0.1

    def validate(self):
        return [(k, f"must be > 0, got {getattr(self, k)}") for k in ("step_size", "gamma") if getattr(self, k) <= 0]


@dataclass
class MultiStepConfig:
    """Multiply the lr by ``gamma`` after each epoch listed in ``milestones`` (counted, like
    every per-epoch schedule, from the end of the warm-up)."""

    milestones: list[int]
    gamma: float = 0.1

    def validate(self):
        out = [("gamma", f"must be > 0, got {self.gamma}")] if self.gamma <= 0 else []
        if any(m < 1 for m in self.milestones) or sorted(set(self.milestones)) != list(self.milestones):
            out.append(("milestones", f"must be increasing epoch counts >= 1, got {self.milestones}"))
        return out


@dataclass
class CosineConfig:
    """Cosine annealing over ``t_max`` epochs (default: every epoch after the warm-up)."""

    t_max: int | None = None
    eta_min: float = 0.0

    def validate(self):
        out = [("t_max", f"must be > 0, got {self.t_max}")] if self.t_max is not None and self.t_max <= 0 else []
        return out + ([("eta_min", f"must be >= 0, got {self.eta_min}")] if self.eta_min < 0 else [])


@dataclass
class OneCycleConfig:
    """torch's OneCycleLR over the whole run, stepped every optimizer step; the
    optimizer's ``lr`` is the peak (``max_lr``). It has its own warm-up (``pct_start``)."""

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: Literal["cos", "linear"] = "cos"

    def validate(self):
        out = [(k, f"must be > 0, got {getattr(self, k)}") for k in ("div_factor", "final_div_factor")
               if getattr(self, k) <= 0]
        if not 0 < self.pct_start < 1:
            out.append(("pct_start", f"must be between 0 and 1, got {self.pct_start}"))
        return out


@dataclass
class NoSettings:
    pass


def _plateau(cfg: PlateauConfig, optimizer):
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    sched = ReduceLROnPlateau(optimizer, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience,
                              threshold=cfg.threshold, min_lr=cfg.min_lr)
    sched.monitor = cfg.monitor
    return sched


def _step(cfg: StepConfig, optimizer):
    from torch.optim.lr_scheduler import StepLR

    return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)


def _multistep(cfg: MultiStepConfig, optimizer):
    from torch.optim.lr_scheduler import MultiStepLR

    return MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)


def _cosine(cfg: CosineConfig, optimizer, epochs: int):
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return CosineAnnealingLR(optimizer, T_max=max(1, cfg.t_max or epochs), eta_min=cfg.eta_min)


def _onecycle(cfg: OneCycleConfig, optimizer, epochs: int, steps_per_epoch: int):
    from torch.optim.lr_scheduler import OneCycleLR

    sched = OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                       total_steps=max(1, epochs * steps_per_epoch), pct_start=cfg.pct_start,
                       div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
                       anneal_strategy=cfg.anneal_strategy)
    sched.interval = "step"
    return sched


def _none(cfg: NoSettings):
    return None


plateau = Plugin("scheduler", "plateau", "reduce the lr when a validation metric stops improving (the seed's)",
                 PlateauConfig, _plateau)
step = Plugin("scheduler", "step", "multiply the lr by gamma every step_size epochs", StepConfig, _step)
multistep = Plugin("scheduler", "multistep", "multiply the lr by gamma after each listed epoch", MultiStepConfig,
                   _multistep)
cosine = Plugin("scheduler", "cosine", "cosine annealing of the lr over the epochs", CosineConfig, _cosine)
onecycle = Plugin("scheduler", "onecycle", "one-cycle lr policy, stepped every optimizer step", OneCycleConfig,
                  _onecycle)
none = Plugin("scheduler", "none", "a constant learning rate", NoSettings, _none)
