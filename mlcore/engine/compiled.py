"""``train.compile``: torch.compile with a fallback to eager execution."""
from __future__ import annotations

import warnings

import torch


class CompiledOrEager:
    """``torch.compile(module)``; if compiling fails (no compiler, an unsupported op —
    which shows at the first call), warn once and run the module as it is."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        try:
            self.compiled = torch.compile(module)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc: Exception) -> None:
        warnings.warn(f"train.compile: torch.compile does not work here ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}); training uncompiled", stacklevel=3)
        self.compiled = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as exc:  # compilation happens here, at the first call
                self._fallback(exc)
        return self.module(x)
