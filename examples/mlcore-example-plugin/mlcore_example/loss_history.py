"""A hook plugin with settings and saved state: the training loss of every epoch.

Its settings come from the config section named after it (``loss_history: {file:
losses.json}``); its state is saved in checkpoints under its name and handed back on
``--resume``, so a resumed run's file lists every epoch, not only those after the resume.
"""
from __future__ import annotations

import json

from mlcore import hookimpl, write_text


class LossHistory:
    """Write each epoch's training loss to a JSON file in the run folder."""

    def __init__(self, file: str = "loss_history.json"):
        self.file = file
        self.losses: dict[int, float] = {}

    @hookimpl
    def mlcore_epoch_end(self, trainer, epoch, train_loss):
        self.losses[epoch] = train_loss
        if trainer.is_main:
            write_text(trainer.output_dir / self.file, json.dumps(self.losses, indent=1) + "\n")

    @hookimpl
    def mlcore_state_dict(self, trainer):
        return {"losses": [[e, v] for e, v in sorted(self.losses.items())]}

    @hookimpl
    def mlcore_load_state_dict(self, trainer, state):
        self.losses = {int(e): float(v) for e, v in state["losses"]}
