"""Metrics: ``update(scores, targets)`` with probabilities, ``compute() -> dict``, ``reset()``."""
from __future__ import annotations

from dataclasses import dataclass

from mlcore import Plugin


@dataclass
class MAPConfig:
    """``interpolated``: the seed's VOC-style interpolated AP (true) or the step-wise AP of
    scikit-learn (false). Unknown (-1) targets are skipped; with nothing to evaluate (an
    empty split) ``mAP`` is NaN and every AP ``None``."""

    interpolated: bool = True


@dataclass
class PRFConfig:
    """``topk`` labels per image, and the probability ``threshold``; ``zero_division``
    (scikit-learn's name): what a 0/0 counts, the precision of a class never predicted or
    the recall of a class never present — 0 (default) or 1 (the seed's CP/CR). Unknown
    (-1) targets are skipped; with nothing to evaluate (an empty split) every value is
    NaN."""

    topk: int = 3
    threshold: float = 0.5
    zero_division: int = 0

    def validate(self):
        out = [] if self.topk >= 1 else [("topk", f"must be >= 1, got {self.topk}")]
        if not 0 <= self.threshold <= 1:
            out.append(("threshold", f"must be a probability in [0, 1], got {self.threshold}"))
        if self.zero_division not in (0, 1):
            out.append(("zero_division", f"must be 0 or 1, got {self.zero_division!r}"))
        return out


def _build_map(cfg: MAPConfig, num_classes: int):
    from .metrics import MeanAP

    return MeanAP(num_classes, cfg.interpolated)


def _build_prf(cfg: PRFConfig, num_classes: int):
    from .metrics import PrecisionRecallF1

    return PrecisionRecallF1(num_classes, cfg.topk, cfg.threshold, cfg.zero_division)


map_metric = Plugin("metric", "map", "mean average precision (mAP) and AP per class", MAPConfig, _build_map)
prf_metric = Plugin("metric", "prf", "CP/CR/CF1/OP/OR/OF1 at top-k and at a probability threshold",
                    PRFConfig, _build_prf)
