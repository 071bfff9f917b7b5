"""Progress: a tqdm bar per epoch on a terminal; one summary line per epoch otherwise."""
from __future__ import annotations

import sys
import time

from mlcore import hookimpl


class Progress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.started = 0.0
        self.epochs = 0

    @hookimpl
    def mlcore_train_start(self, trainer):
        self.epochs = trainer.config.train.epochs

    @hookimpl
    def mlcore_epoch_start(self, trainer, epoch, num_steps):
        self.started = time.perf_counter()
        if trainer.is_main and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=num_steps, desc=f"epoch {epoch}/{self.epochs}", file=self.stream,
                            leave=False, dynamic_ncols=True)

    @hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    @hookimpl
    def mlcore_epoch_end(self, trainer, epoch, train_loss, metrics):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not trainer.is_main:
            return
        parts = [f"epoch {epoch}/{self.epochs}", f"loss {train_loss:.4f}"]
        parts += [f"{k} {metrics[k]:.4f}" for k in ("mAP", "topk_cf1", "threshold_of1")
                  if isinstance(metrics.get(k), float)]
        parts.append(f"lr {trainer.lr:.2e}")
        parts.append(f"{time.perf_counter() - self.started:.1f}s")
        print("  ".join(parts), file=self.stream, flush=True)

    @hookimpl
    def mlcore_train_end(self, trainer, reason):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
