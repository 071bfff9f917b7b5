"""Reading a run folder for the report: every piece is optional except ``config.yaml``
(what makes a folder a run folder). A piece that is missing or unreadable is recorded
with the reason and the command that makes it, for the page to say so."""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlcoreError


@dataclass
class RunData:
    root: Path
    split: str
    config_text: str
    config: dict
    environment: dict | None = None
    summary: dict | None = None  # result.json of `mlcore train` (best epoch, its metrics)
    metrics: list[dict] = field(default_factory=list)
    tb_loss: list[tuple[int, float]] = field(default_factory=list)
    classes: list[str] | None = None
    label_info: Any = None  # LabelInfo of the train split
    train_split: str = "train"
    result: dict | None = None  # eval/result.json
    scores: np.ndarray | None = None  # eval/scores.npy, N×C
    targets: np.ndarray | None = None  # of the evaluated split, N×C
    thresholds: Any = None  # mlcore.thresholds_file.Thresholds
    missing: dict[str, str] = field(default_factory=dict)  # piece -> why, and what makes it

    def command(self, name: str) -> str:
        """The command that makes a missing piece of this run."""
        q = shlex.quote
        cfg, best = q(str(self.root / "config.yaml")), q(str(self.root / "checkpoints" / "best.pt"))
        if name == "evaluate":
            out = q(str(self.root / "eval"))
            return f"mlcore evaluate {cfg} --checkpoint {best} --out {out} --split {q(self.split)}"
        if name == "calibrate":
            return f"mlcore calibrate {cfg} --checkpoint {best}"
        return f"mlcore train {cfg} --set output_dir={q(str(self.root))}"


def collect(run_dir: str | os.PathLike, split: str = "val") -> RunData:
    root = Path(run_dir)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder"
        raise MlcoreError(f"RUN_DIR {str(root)!r} {what}; give the output_dir of a run of `mlcore train`")
    cfg_path = root / "config.yaml"
    if not cfg_path.is_file():
        raise MlcoreError(f"{str(root)!r} is not an mlcore run folder: it has no config.yaml "
                          f"(give the output_dir that `mlcore train` wrote)")
    import yaml

    text = cfg_path.read_text(encoding="utf-8", errors="replace")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MlcoreError(f"{str(cfg_path)!r} is not valid YAML: {exc}") from None
    data = RunData(root, split, text, config if isinstance(config, dict) else {})
    data.environment = _json(root / "environment.json", data, "environment", "written by `mlcore train`")
    data.summary = _json(root / "result.json", data, "summary", "written by `mlcore train` when it ends")
    _metrics(data)
    _dataset(data)
    _evaluation(data)
    _thresholds(data)
    return data


def _json(path: Path, data: RunData, piece: str, origin: str) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data.missing[piece] = f"{path.name} is missing ({origin})"
        return None
    except (OSError, ValueError) as exc:
        data.missing[piece] = f"{path.name} cannot be read: {exc}"
        return None
    if not isinstance(value, dict):
        data.missing[piece] = f"{path.name} does not hold a JSON object"
        return None
    return value


def _metrics(data: RunData) -> None:
    path = data.root / "metrics.jsonl"
    if not path.is_file():
        data.missing["metrics"] = ("metrics.jsonl is missing: `mlcore train` writes one line per validation; "
                                   f"train the run with `{data.command('train')}`")
        return
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            data.metrics.append(row)
    if bad:
        data.missing["metrics_lines"] = f"{bad} line(s) of metrics.jsonl are not JSON and were skipped"
    if not data.metrics:
        data.missing["metrics"] = "metrics.jsonl holds no validation yet (the run ended before its first " \
                                  "epoch)"
    if not any("loss" in k for r in data.metrics for k in r):
        data.tb_loss = _tensorboard_loss(data.root / "events")


def _tensorboard_loss(folder: Path) -> list[tuple[int, float]]:
    """``train/loss`` from the TensorBoard events, when the package is there to read them
    (metrics.jsonl holds validation metrics only)."""
    if not folder.is_dir():
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" not in acc.Tags().get("scalars", []):
            return []
        return [(int(e.step), float(e.value)) for e in acc.Scalars("train/loss")]
    except Exception:  # optional: an unreadable or absent reader only loses the loss curve
        return []


def _dataset(data: RunData) -> None:
    """Label statistics of the train split and the targets of the reported split, from the
    dataset the run's config names (no model is built)."""
    from ..experiment import build

    try:
        exp = build(str(data.root / "config.yaml"))
        data.train_split = exp.config.data.train_split
        data.label_info = exp.label_info
        data.classes = list(exp.classes)
        ds = exp.split_set(data.split)
        if hasattr(ds, "targets"):
            data.targets = np.asarray(ds.targets)
        else:
            data.missing["targets"] = (f"split {data.split!r} has no dense targets matrix (a sparse "
                                       f"dataset); "
                                       f"curves and false positives need one")
    except MlcoreError as exc:
        data.missing["dataset"] = f"the dataset of config.yaml could not be built here: {exc}"


def _evaluation(data: RunData) -> None:
    folder = data.root / "eval"
    result = _json(folder / "result.json", data, "eval", "written by `mlcore evaluate`")
    if result is None:
        data.missing["eval"] = (f"No evaluation in {str(folder)!r}: {data.missing['eval']}. "
                                f"Make it with `{data.command('evaluate')}`")
        return
    if result.get("split", data.split) != data.split:
        data.missing["eval"] = (f"eval/result.json is of split {result.get('split')!r}, not {data.split!r}; "
                                f"run `{data.command('evaluate')}` or report with "
                                f"--split {result.get('split')}")
        return
    data.result = result
    classes = result.get("classes")
    if isinstance(classes, list):
        if data.classes is not None and classes != data.classes:  # the evaluation's classes are used
            data.missing["scores"] = ("eval/result.json names other classes than the dataset of config.yaml; "
                                      f"run `{data.command('evaluate')}` again")
            data.targets = None
        data.classes = list(classes)
    if "scores" in data.missing:
        return
    try:
        scores = np.load(folder / "scores.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        data.missing["scores"] = (f"eval/scores.npy cannot be read ({exc}); "
                                  f"make it again with `{data.command('evaluate')}`")
        return
    c = len(data.classes or [])
    if scores.ndim != 2 or scores.shape[1] != c:
        data.missing["scores"] = f"eval/scores.npy has shape {scores.shape}, not N×{c}"
        return
    if data.targets is not None and data.targets.shape != scores.shape:
        data.missing["scores"] = (f"eval/scores.npy ({scores.shape}) does not match split {data.split!r} "
                                  f"({data.targets.shape}): the dataset changed since the evaluation; "
                                  f"run `{data.command('evaluate')}`")
        data.targets = None
        return
    data.scores = scores.astype(np.float64)


def _thresholds(data: RunData) -> None:
    from ..thresholds_file import read_thresholds

    path = data.root / "checkpoints" / "thresholds.json"
    if not path.is_file():
        data.missing["thresholds"] = (f"no calibrated thresholds ({str(path)!r}). "
                                      f"Make them with `{data.command('calibrate')}`")
        return
    try:
        data.thresholds = read_thresholds(path, classes=data.classes)
    except MlcoreError as exc:
        data.missing["thresholds"] = f"{exc}"
