"""matplotlib, imported only when a figure is drawn (``mlcore --help`` stays fast), with
one clear error when it is not installed.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never through
``pyplot``: no global state, no backend switched under a notebook that imports mlcore, and
nothing to close afterwards.
"""
from __future__ import annotations

import io
from typing import Any

from ..errors import MlcoreError


def require() -> Any:
    """The ``matplotlib`` module; MlcoreError naming the extra to install when absent."""
    try:
        import matplotlib
    except ImportError:
        raise MlcoreError("drawing figures needs matplotlib: pip install 'mlcore[report]'") from None
    return matplotlib


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
             squeeze: bool = True) -> tuple[Any, Any]:
    """A figure (constrained layout: labels and colour bars never overlap) and its axes."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def png(fig: Any, dpi: int = 90) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
