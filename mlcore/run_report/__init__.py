"""``mlcore report``: one self-contained HTML page that explains a run folder.

:func:`write_report` reads a run folder (:mod:`.collect`), draws its figures with
matplotlib (:mod:`.figures`, shared with ``evaluate --plots`` and ``analyze``) and writes
the page (:mod:`.html`). The report reads what the run's commands wrote and never runs the
model: a missing piece (``eval/``, ``thresholds.json``, ``metrics.jsonl``) is named in its
section with the command that makes it, so a report is fast, needs no device, and shows
exactly the numbers the run's files hold.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_report"]


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 split: str = "val") -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``),
    atomically; returns its path. Raises MlcoreError when ``run_dir`` is not a run folder."""
    from ..errors import MlcoreError
    from ..files import write_text
    from .collect import collect
    from .html import render

    data = collect(run_dir, split)
    page = render(data)
    target = Path(out) if out is not None else data.root / "report.html"
    if target.is_dir():
        raise MlcoreError(f"--out {str(target)!r} is a folder; give a file name such as report.html")
    try:
        write_text(target, page)
    except OSError as exc:
        raise MlcoreError(f"cannot write the report to {str(target)!r}: {exc.strerror or exc}") from exc
    return target
