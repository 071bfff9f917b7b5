"""An exponential moving average of a model's weights (as timm's ModelEmaV2).

After each optimizer step: ema ← decay·ema + (1−decay)·weights for floating-point
parameters and buffers (integer buffers such as BatchNorm's counters are copied). The
average is a separate module in eval mode; the trainer evaluates it beside the model.
"""
from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema_state = self.module.state_dict()
        floats_ema, floats_new = [], []
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if value.dtype.is_floating_point:
                floats_ema.append(target)
                floats_new.append(value.detach())
            else:
                target.copy_(value)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_new, 1.0 - self.decay)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
