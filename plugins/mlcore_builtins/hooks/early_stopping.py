"""Early stopping as a hook: counts epochs without improvement, sets ``should_stop``."""
from __future__ import annotations

import math

from mlcore import hookimpl


class EarlyStopping:
    def __init__(self, monitor: str, patience: int, min_delta: float, mode: str = "max"):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if mode == "max" else -1.0
        self.best: float | None = None
        self.bad_epochs = 0

    @hookimpl
    def mlcore_epoch_end(self, trainer, epoch, train_loss, metrics):
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.best is None or self.sign * (float(value) - self.best) > self.min_delta:
            self.best, self.bad_epochs = float(value), 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            trainer.should_stop = True
            if trainer.is_main:
                print(f"early stop: no better {self.monitor} for {self.bad_epochs} epochs (best {self.best:.4f})")

    @hookimpl
    def mlcore_state_dict(self, trainer):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    @hookimpl
    def mlcore_load_state_dict(self, trainer, state):
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])
