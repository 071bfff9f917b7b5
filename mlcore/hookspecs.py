"""The trainer's lifecycle hooks: every hook specified once, here.

Hook plugins implement some of these with ``@mlcore.hookimpl`` (pluggy). They are found
through the ``mlcore.hooks`` entry-point group and are active once installed, as pytest
plugins are; a hook plugin with settings reads the top-level config section named after
it (``early_stop: {patience: 5}``), and ``<name>: false`` switches it off for a run.

The contract is checked when training starts: a ``hookimpl`` whose name is not one of
these (a misspelling) or whose arguments are not among the hook's is an error naming
the plugin, its distribution and the hook. An implementation may take any subset of a
hook's arguments.

**Epochs count from 1** everywhere a user sees them: the ``epoch`` argument of these
hooks is the number of the epoch that starts or ended (1 for the first), as in the
progress display, ``metrics.jsonl``, ``result.json``'s ``best_epoch`` and checkpoints'
``epoch``; ``trainer.epoch`` is the number of epochs completed so far (0 before the first
ends). Steps count optimizer steps from 1; ``trainer.step`` is the number taken.

``trainer`` is the :class:`mlcore.engine.trainer.Trainer`: hooks read ``trainer.epoch``,
``trainer.step``, ``trainer.output_dir``, ``trainer.is_main``, ``trainer.config``,
``trainer.experiment`` and ``trainer.last_scores``, and may set ``trainer.should_stop``
or call ``trainer.interrupt()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .engine.trainer import Trainer

PROJECT = "mlcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mlcore_train_start(trainer: Trainer) -> None:
    """Training is about to begin (after a resume, too: ``trainer.epoch`` says where)."""


@hookspec
def mlcore_epoch_start(trainer: Trainer, epoch: int, num_steps: int) -> None:
    """Epoch number ``epoch`` (from 1) begins; ``num_steps`` optimizer steps remain in it
    (fewer after a mid-epoch resume)."""


@hookspec
def mlcore_train_step_end(trainer: Trainer, step: int, loss: float | None, lr: float) -> None:
    """Optimizer step number ``step`` (from 1) ended. ``loss`` is a float only on logging
    steps (every ``train.log_every`` steps and the last of an epoch), else None, so that
    no step waits for the device just to report."""


@hookspec
def mlcore_validation_end(trainer: Trainer, epoch: int, metrics: dict) -> None:
    """Validation after epoch ``epoch`` produced ``metrics`` (``mAP``, ``ap_list``, …)."""


@hookspec
def mlcore_epoch_end(trainer: Trainer, epoch: int, train_loss: float, metrics: dict) -> None:
    """Epoch ``epoch`` ended (``trainer.epoch == epoch``); checkpoints are written after
    this, so state set here is saved."""


@hookspec
def mlcore_train_end(trainer: Trainer, reason: str) -> None:
    """Training ended: ``reason`` is ``finished``, ``early_stop``, ``interrupted`` (a
    signal; the checkpoint is written) or ``error`` (an exception is on its way out — an
    exception raised here is reported as a warning and never hides it)."""


@hookspec
def mlcore_state_dict(trainer: Trainer) -> dict | None:
    """This plugin's own state, saved in checkpoints under its registered name (e.g.
    early stopping's counters); None saves nothing."""


@hookspec
def mlcore_load_state_dict(trainer: Trainer, state: dict) -> None:
    """On resume: the state this plugin's ``mlcore_state_dict`` returned when the
    checkpoint was written (called only when it saved one)."""
