"""TensorBoard scalars: ``train/loss`` and ``train/lr`` at logging steps, every scalar
validation metric per epoch (``val/mAP``, …), written to ``output_dir/events``."""
from __future__ import annotations

from mlcore import hookimpl


class TensorBoardLogger:
    def __init__(self):
        self.writer = None

    @hookimpl
    def mlcore_train_start(self, trainer):
        if not trainer.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        # on resume, drop events logged after the checkpoint so curves do not fold back
        self.writer = SummaryWriter(str(trainer.output_dir / "events"), purge_step=trainer.step or None)

    @hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        if self.writer is not None and loss is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    @hookimpl
    def mlcore_epoch_end(self, trainer, epoch, train_loss, metrics):
        if self.writer is None:
            return
        self.writer.add_scalar("train/epoch_loss", train_loss, trainer.step)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and v is not None:
                self.writer.add_scalar(f"val/{k}", v, trainer.step)
        self.writer.flush()

    @hookimpl
    def mlcore_train_end(self, trainer, reason):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
