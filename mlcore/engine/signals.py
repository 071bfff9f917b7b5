"""SIGINT/SIGTERM during training: noted, acted on after the current step."""
from __future__ import annotations

import signal
import threading


class StopSignals:
    """While active (``with``), SIGINT and SIGTERM only set ``received``; the loop saves a
    checkpoint and stops at the next step boundary. Outside the main thread (where
    handlers cannot be installed) it does nothing."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def request(self) -> None:
        """Stop as a SIGTERM would (``trainer.interrupt()``)."""
        self.received = signal.SIGTERM

    def _on_signal(self, signum, frame) -> None:
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
