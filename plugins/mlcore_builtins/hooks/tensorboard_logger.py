"""TensorBoard: ``train/loss`` and ``train/lr`` at logging steps; per epoch every scalar
validation metric (``val/mAP``, CF1, OF1, …), the AP of each class (``val_ap/<class>``),
precision–recall curves of the first 20 classes, and the first 4 validation images with
their top-3 predicted labels and, on a line of its own below, their true labels
(``true: a, b``; ``-`` for none, unknown ones left out; wrapped to the image's width) so a caption can be judged at a
glance. Written to ``output_dir/events``."""
from __future__ import annotations

from mlcore import hookimpl

#: captioned images are at least this wide (pixels), so that the labels can be read
CAPTION_MIN_WIDTH = 160


def purge_step(checkpoint_step: int) -> int | None:
    """On resume, events from the step after the checkpoint's on are dropped (they will be
    logged again); the checkpoint's own step — its epoch's validation scalars and images —
    is kept. None (nothing dropped) for a fresh run."""
    return checkpoint_step + 1 if checkpoint_step else None


class TensorBoardLogger:
    def __init__(self):
        self.writer = None

    @hookimpl
    def mlcore_train_start(self, trainer):
        if not trainer.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(trainer.output_dir / "events"), purge_step=purge_step(trainer.step))

    @hookimpl
    def mlcore_train_step_end(self, trainer, step, loss, lr):
        if self.writer is not None and loss is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    @hookimpl
    def mlcore_epoch_end(self, trainer, epoch, train_loss, metrics):
        if self.writer is None:
            return
        step = trainer.step
        self.writer.add_scalar("train/epoch_loss", train_loss, step)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and v is not None:
                self.writer.add_scalar(f"val/{k}", v, step)
        classes = trainer.experiment.classes
        for c, ap in zip(classes, metrics.get("ap_list") or []):
            if ap is not None:
                self.writer.add_scalar(f"val_ap/{c}", ap, step)
        scores = trainer.last_scores
        if scores is not None and len(scores):
            import numpy as np

            targets = np.asarray(trainer.experiment.val_set.targets)
            for j, c in enumerate(classes[:20]):
                self.writer.add_pr_curve(f"val_pr/{c}", targets[:, j], scores[:, j].numpy(), step)
            self.writer.add_images("val/predictions", self._captioned(trainer, scores), step)
        self.writer.flush()

    @staticmethod
    def _captioned(trainer, scores, n: int = 4):
        """The first ``n`` validation images with their top-3 predicted labels written below,
        then a ``true: …`` line of their positive labels (long lines are cut to the width)."""
        import numpy as np
        import torch
        from PIL import Image, ImageDraw

        ds, classes = trainer.experiment.val_set, trainer.experiment.classes
        shown = []
        for i in range(min(n, len(ds))):
            img = ds[i][0].permute(1, 2, 0).numpy()
            top = scores[i].topk(min(3, len(classes))).indices.tolist()
            truth = [classes[j] for j in np.flatnonzero(np.asarray(_target_row(ds, i)) == 1)]
            shown.append((img, [f"{classes[j]} {float(scores[i, j]):.2f}" for j in top], truth))
        # one canvas size for all (add_images stacks them): wide enough to read, tall enough
        # for the longest caption
        width = max(max(img.shape[1] for img, _, _ in shown), CAPTION_MIN_WIDTH)
        captions = [predicted + _wrapped("true: " + (", ".join(truth) or "-"), width) for _, predicted, truth in shown]
        height = max(img.shape[0] for img, _, _ in shown) + 14 * max(len(c) for c in captions)
        out = []
        for (img, predicted, _), lines in zip(shown, captions):
            canvas = Image.new("RGB", (width, height), "white")
            canvas.paste(Image.fromarray(img), (0, 0))
            draw = ImageDraw.Draw(canvas)
            for k, text in enumerate(lines):
                draw.text((2, img.shape[0] + 14 * k), text, fill="black" if k < len(predicted) else "darkgreen")
            out.append(torch.from_numpy(np.array(canvas)).permute(2, 0, 1))
        return torch.stack(out)

    @hookimpl
    def mlcore_train_end(self, trainer, reason):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _target_row(ds, i: int):
    """Image ``i``'s targets (1 positive, 0 negative, -1 unknown) without decoding it."""
    targets = ds.targets
    row = targets[i]
    return row.toarray().ravel() if hasattr(row, "toarray") else row


def _wrapped(text: str, width_px: int, char_px: int = 6) -> list[str]:
    """``text`` cut into lines that fit ``width_px`` (PIL's default font: ~6 px a character)."""
    import textwrap

    per_line = max(8, (width_px - 4) // char_px)
    return textwrap.wrap(text, per_line) or [text]
