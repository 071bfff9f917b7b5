"""The trainer's lifecycle hooks: every hook specified once, here.

Hook plugins implement some of these with ``@mlcore.hookimpl`` (pluggy). They are found
through the ``mlcore.hooks`` entry-point group and are active once installed, as pytest
plugins are; a hook plugin with settings reads the top-level config section named after
it (``early_stop: {patience: 5}``), and ``<name>: false`` switches it off for a run.

The ``trainer`` argument is the :class:`mlcore.engine.trainer.Trainer`: hooks read
``trainer.epoch``, ``trainer.step``, ``trainer.output_dir``, ``trainer.is_main`` and may set
``trainer.should_stop``.
"""
from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "mlcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mlcore_train_start(trainer: Any) -> None:
    """Training is about to begin (after a resume, too: ``trainer.epoch`` says where)."""


@hookspec
def mlcore_epoch_start(trainer: Any, epoch: int, num_steps: int) -> None:
    """An epoch begins; ``num_steps`` steps remain in it (fewer after a mid-epoch resume)."""


@hookspec
def mlcore_train_step_end(trainer: Any, step: int, loss: float | None, lr: float) -> None:
    """A training step ended. ``loss`` is a float only on logging steps (every
    ``train.log_every`` steps and the last of an epoch), else None, so that no step waits
    for the device just to report."""


@hookspec
def mlcore_validation_end(trainer: Any, epoch: int, metrics: dict) -> None:
    """Validation after ``epoch`` produced ``metrics`` (``mAP``, ``ap_list``, …)."""


@hookspec
def mlcore_epoch_end(trainer: Any, epoch: int, train_loss: float, metrics: dict) -> None:
    """An epoch ended; checkpoints are written after this, so state set here is saved."""


@hookspec
def mlcore_train_end(trainer: Any, reason: str) -> None:
    """Training ended: ``reason`` is ``finished``, ``early_stop`` or ``interrupted``."""


@hookspec
def mlcore_state_dict(trainer: Any) -> tuple[str, dict] | None:
    """Return ``(name, state)`` to be saved in checkpoints (e.g. early-stopping counters)."""


@hookspec
def mlcore_load_state_dict(trainer: Any, states: dict) -> None:
    """Restore from ``states`` (name → state, as returned by ``mlcore_state_dict``) on resume."""
