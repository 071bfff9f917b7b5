"""Errors a user can cause.

Every exception deriving from :class:`MlcoreError` is the user's to fix (a bad config, a
missing file, an unknown plugin). The CLI prints its message alone and exits with status 2;
any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class MlcoreError(Exception):
    """A problem the user can fix; its message says what and where."""


class ConfigError(MlcoreError):
    """One or more problems in a config; ``problems`` holds each one as a line."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = "invalid config" if len(self.problems) > 1 else ""
        body = "\n  ".join(self.problems)
        super().__init__(f"{head}:\n  {body}" if head else body)


class PluginError(MlcoreError):
    """A plugin is unknown, switched off, offered twice, or failed to import or build."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""`` when none is close.

    Case is ignored when comparing (``ASL`` suggests ``asl``): names are case-sensitive,
    but a user who typed another case meant that name; the option is shown as spelled."""
    options = [str(o) for o in options]
    by_lower: dict[str, str] = {}
    for o in options:
        by_lower.setdefault(o.lower(), o)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


class TrainingInterrupted(MlcoreError):
    """SIGINT/SIGTERM stopped training after a checkpoint was written; the message says
    how to resume."""
