"""Metrics: ``update(scores, targets)`` with probabilities, ``compute() -> dict``, ``reset()``."""
from __future__ import annotations

from dataclasses import dataclass

from mlcore import Plugin


@dataclass
class MAPConfig:
    """``interpolated``: the seed's VOC-style interpolated AP (true) or the step-wise AP of
    scikit-learn (false)."""

    interpolated: bool = True


@dataclass
class PRFConfig:
    """``topk`` labels per image, and the probability ``threshold``."""

    topk: int = 3
    threshold: float = 0.5

    def validate(self):
        out = [] if self.topk >= 1 else [("topk", f"must be >= 1, got {self.topk}")]
        if not 0 <= self.threshold <= 1:
            out.append(("threshold", f"must be a probability in [0, 1], got {self.threshold}"))
        return out


def _build_map(cfg: MAPConfig, num_classes: int):
    from .metrics import MeanAP

    return MeanAP(num_classes, cfg.interpolated)


def _build_prf(cfg: PRFConfig, num_classes: int):
    from .metrics import PrecisionRecallF1

    return PrecisionRecallF1(num_classes, cfg.topk, cfg.threshold)


map_metric = Plugin("metric", "map", "mean average precision (mAP) and AP per class", MAPConfig, _build_map)
prf_metric = Plugin("metric", "prf", "CP/CR/CF1/OP/OR/OF1 at top-k and at a probability threshold",
                    PRFConfig, _build_prf)
