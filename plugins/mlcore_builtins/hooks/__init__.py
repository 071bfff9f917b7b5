"""Built-in hook plugins: early stopping, TensorBoard scalars, the progress display.

Each is active once installed; its config section (named after it) holds its settings,
and ``<name>: false`` switches it off for one run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlcore import Plugin


@dataclass
class EarlyStopConfig:
    """Stop after ``patience`` epochs without a ``monitor`` (any reported metric, e.g.
    ``mAP``, ``ema_mAP``, ``threshold_cf1``) better by more than ``min_delta``;
    ``mode: min`` for metrics where lower is better."""

    monitor: str = "mAP"
    patience: int = 5
    min_delta: float = 0.0
    mode: Literal["max", "min"] = "max"

    def validate(self):
        return [] if self.patience >= 1 else [("patience", f"must be >= 1, got {self.patience}")]


@dataclass
class NoSettings:
    pass


def _early_stop(cfg: EarlyStopConfig):
    from .early_stopping import EarlyStopping

    return EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta, cfg.mode)


def _tensorboard(cfg: NoSettings):
    from .tensorboard_logger import TensorBoardLogger

    return TensorBoardLogger()


def _progress(cfg: NoSettings):
    from .progress_display import Progress

    return Progress()


early_stop = Plugin("hook", "early_stop", "stop when the validation score stops improving (the seed's rule)",
                    EarlyStopConfig, _early_stop)
tensorboard = Plugin("hook", "tensorboard", "TensorBoard scalars (loss, lr, metrics) in output_dir/events",
                     NoSettings, _tensorboard)
progress = Plugin("hook", "progress", "a progress bar per epoch (one line per epoch when not a terminal)",
                  NoSettings, _progress)
