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
        self._pairs: tuple | None = None  # (model, its float tensors, ours, its other tensors, ours)

    def _tensors(self, model: torch.nn.Module) -> tuple:
        """The two models' tensors, paired once: the training step reuses the lists (the
        tensors are updated in place, so the pairing stays valid)."""
        if self._pairs is None or self._pairs[0] is not model:
            ours = self.module.state_dict()
            floats = ([], [])
            others = ([], [])
            for name, value in model.state_dict().items():
                group = floats if value.dtype.is_floating_point else others
                group[0].append(value.detach())
                group[1].append(ours[name])
            self._pairs = (model, floats[0], floats[1], others[0], others[1])
        return self._pairs

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        _, new_f, ema_f, new_o, ema_o = self._tensors(model)
        if ema_f:
            torch._foreach_lerp_(ema_f, new_f, 1.0 - self.decay)
        for target, value in zip(ema_o, new_o):
            target.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)  # in place: the paired tensors stay the same
