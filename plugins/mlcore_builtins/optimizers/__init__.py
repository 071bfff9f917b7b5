"""Optimizers: torch's Adam, AdamW, SGD and RMSprop, their YAML keys their arguments.

Each build receives ``params`` — the model's parameter groups, made by the framework
(the backbone's group is scaled by the section's ``backbone_lr_mult`` after building) —
and returns a ``torch.optim.Optimizer``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mlcore import Plugin


def _positive(obj, *names: str) -> list[tuple[str, str]]:
    return [(n, f"must be > 0, got {getattr(obj, n)!r}") for n in names if getattr(obj, n) <= 0]


def _non_negative(obj, *names: str) -> list[tuple[str, str]]:
    return [(n, f"must be >= 0, got {getattr(obj, n)!r}") for n in names if getattr(obj, n) < 0]


@dataclass
class AdamConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False

    def validate(self):
        out = _positive(self, "lr", "eps") + _non_negative(self, "weight_decay")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            out.append(("betas", f"must be two numbers in [0, 1), got {self.betas!r}"))
        return out


@dataclass
class AdamWConfig(AdamConfig):
    weight_decay: float = 0.01


@dataclass
class SGDConfig:
    lr: float = 0.01
    weight_decay: float = 0.0
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False

    def validate(self):
        return _positive(self, "lr") + _non_negative(self, "weight_decay", "momentum", "dampening")


@dataclass
class RMSpropConfig:
    lr: float = 0.01
    weight_decay: float = 0.0
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    def validate(self):
        return _positive(self, "lr", "alpha", "eps") + _non_negative(self, "weight_decay", "momentum")


def _torch(cls_name: str):
    def build(cfg, params):
        import torch

        kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return getattr(torch.optim, cls_name)(params, **kwargs)

    return build


adam = Plugin("optimizer", "adam", "torch.optim.Adam", AdamConfig, _torch("Adam"))
adamw = Plugin("optimizer", "adamw", "torch.optim.AdamW (decoupled weight decay)", AdamWConfig, _torch("AdamW"))
sgd = Plugin("optimizer", "sgd", "torch.optim.SGD with momentum", SGDConfig, _torch("SGD"))
rmsprop = Plugin("optimizer", "rmsprop", "torch.optim.RMSprop", RMSpropConfig, _torch("RMSprop"))
