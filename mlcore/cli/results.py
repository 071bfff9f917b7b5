"""Printing and writing results: the metric table, result.json, predictions.tsv (used by the commands; not the `report` command)."""
from __future__ import annotations

import json
import os
from typing import Any

from ..errors import MlcoreError
from ..files import json_safe, write_bytes


def write_file(data: str | bytes, path: str | os.PathLike) -> None:
    """Write a result file atomically; a failure is one error naming the file."""
    try:
        write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise MlcoreError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc


def write_json(obj: Any, path: str | os.PathLike) -> None:
    write_file(json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n", path)


def print_metrics(metrics: dict, classes: list[str]) -> None:
    """The headline numbers (``ema_mAP`` too when the EMA of the weights was scored), then AP
    per class, best first (labels without positives last); every number to 4 decimals."""
    head = [k for k in ("mAP", "mAP_noninterp", "ema_mAP", "topk_cf1", "topk_of1", "threshold_cf1",
                        "threshold_of1") if k in metrics]
    if head:
        print("  ".join(f"{k} {_fmt(metrics[k])}" for k in head))
    aps = metrics.get("ap_list")
    if aps:
        width = max(len(c) for c in classes)
        print("AP per class:")
        for ap, c in sorted(zip(aps, classes), key=lambda x: (x[0] is None, -(x[0] or 0))):
            print(f"  {c.ljust(width)}  {_fmt(ap)}")


def _fmt(v: Any) -> str:
    """A metric as printed: 4 decimals (full precision stays in result.json); n/a for none."""
    return "n/a" if v is None or v != v else f"{float(v):.4f}"
