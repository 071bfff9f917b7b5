"""The one collector of config problems, and their one message format.

A config is checked whole before anything runs, and every problem found is reported
together, each as one line ``FILE: YAML.PATH: message`` — the file being the one that
set that path (a ``_base_`` file, the config itself, ``--set`` or ``<dict>``).
"""
from __future__ import annotations

from collections.abc import Callable

from .errors import ConfigError

#: Given a YAML path, the file that set it ("" when unknown).
Locate = Callable[[str], str]


def _nowhere(path: str) -> str:
    return ""


class Problems:
    """Problems found so far; :meth:`raise_if_any` turns them into one ConfigError."""

    def __init__(self, locate: Locate = _nowhere):
        self.locate = locate
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Note a problem at the YAML ``path`` (e.g. ``model.dropout``)."""
        file = self.locate(path)
        self.lines.append(f"{file + ': ' if file else ''}{path}: {message}")

    def __len__(self) -> int:
        return len(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)
