"""``mlcore.build(cfg)``: a checked config turned into an Experiment; ``mlcore.create``.

An Experiment builds its parts on first access (a model needs the train split's labels,
evaluation needs no optimizer), so ``build`` is cheap and ``evaluate``/``predict`` never
pay for what they do not use.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from .config import Config, load_config
from .errors import MlcoreError, PluginError
from .labels import LabelInfo
from .plugin import build_named
from .registry import Registry


def _built(what: str, spec, **context: Any) -> Any:
    return build_named(spec.plugin, spec.cfg, what, **context)


def shared_images(train: Any, val: Any) -> tuple[int, list[str]]:
    """``(count, a few names)`` of the images of ``val`` that are also in ``train``, by
    normalized absolute path; ``(0, [])`` when either dataset has no list of ``images``
    (the attribute is optional; a lazy sequence such as OpenImages' 9M paths is skipped).
    Cheap: only the paths whose file name is also in the other split are normalized."""
    a, b = getattr(train, "images", None), getattr(val, "images", None)
    if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)):
        return 0, []
    names = {os.path.basename(str(p)) for p in a}
    maybe = [str(p) for p in b if os.path.basename(str(p)) in names]
    if not maybe:
        return 0, []
    common = {os.path.basename(m) for m in maybe}
    kept = {os.path.normpath(os.path.abspath(str(p))) for p in a if os.path.basename(str(p)) in common}
    both = [p for p in maybe if os.path.normpath(os.path.abspath(p)) in kept]
    return len(both), both[:5]


class Experiment:
    """Everything one config describes: data, model, loss, metrics, and how to train.

    ``fit()`` trains (``resume=True`` continues from ``output_dir/checkpoints/last.pt``),
    ``evaluate(split)`` scores a split, ``predict(images)`` gives probabilities,
    ``load_checkpoint("best" | "last" | path)`` chooses the weights they use.
    """

    def __init__(self, config: Config):
        self.config = config
        self._splits: dict[str, Any] = {}

    # -- parts, built on first use ---------------------------------------------------------
    @property
    def eval_transform(self):
        """The evaluation transform of ``data``: resize to scale_size², centre crop."""
        from .data.transforms import EvalTransform

        return EvalTransform(self.config.data.scale_size, self.config.data.crop_size)

    def _dataset(self, split: str, train: bool):
        from .data.holdout import HOLDOUT_SPLIT, split_off
        from .data.transforms import TrainTransform

        d = self.config.data
        transform = (TrainTransform(d.scale_size, d.crop_size, d.train_crops, d.hflip, d.randaugment, d.cutout,
                                    d.random_resized_crop)
                     if train else self.eval_transform)
        spec = self.config.dataset
        holdout = d.calib_holdout or 0  # data.calib_holdout: split `calib` is a part of the train split
        source = d.train_split if holdout and split == HOLDOUT_SPLIT else split
        ds = _built(f"dataset '{spec.name}' failed to build the {source!r} split", spec,
                    split=source, transform=transform)
        # a dense N×C ``targets`` matrix, or — for a dataset too large for one (OpenImages:
        # 9M × 9,605) — its own ``label_info()``; ``images`` (paths) is optional
        for attr in ("classes", "__len__", "__getitem__"):
            if not hasattr(ds, attr):
                raise MlcoreError(f"dataset '{spec.name}' gave an object without '{attr}' for split {split!r}")
        if not hasattr(ds, "targets") and not callable(getattr(ds, "label_info", None)):
            raise MlcoreError(f"dataset '{spec.name}' gave an object with neither 'targets' nor 'label_info()' "
                              f"for split {split!r}")
        if len(ds) == 0:
            raise MlcoreError(f"dataset '{spec.name}': split {source!r} is empty")
        if holdout and source == d.train_split:  # the part kept aside is never trained on
            ds = split_off(ds, holdout, self.config.train.seed, held=split != source,
                           what=f"split {source!r} of dataset '{spec.name}'")
        return ds

    @cached_property
    def train_set(self):
        return self._dataset(self.config.data.train_split, train=True)

    @cached_property
    def val_set(self):
        ds = self._dataset(self.config.data.val_split, train=False)
        if list(ds.classes) != list(self.classes):
            raise MlcoreError(f"dataset '{self.config.dataset.name}': split {self.config.data.val_split!r} "
                              f"has other classes than the train split")
        # leakage: an image in both splits inflates every validation score (once per build)
        count, some = shared_images(self.train_set, ds)
        if count:
            import warnings

            d = self.config.data
            warnings.warn(f"dataset '{self.config.dataset.name}': {count} of the {len(ds)} images of the "
                          f"{d.val_split} split are also in the {d.train_split} split (the same file), which "
                          f"inflates validation scores: {', '.join(map(repr, some))}"
                          f"{', …' if count > len(some) else ''}", stacklevel=2)
        return ds

    @cached_property
    def classes(self) -> list[str]:
        return list(self.train_set.classes)

    @cached_property
    def label_info(self) -> LabelInfo:
        """Label statistics of the train split only (never validation labels): the
        dataset's own ``label_info()`` where it has one (a dataset too large for a dense
        N×C ``targets`` matrix, such as OpenImages, counts its sparse labels), else
        counted from ``targets``."""
        ds = self.train_set
        try:
            if callable(getattr(ds, "label_info", None)):
                info = ds.label_info()
                if not isinstance(info, LabelInfo) or list(info.classes) != self.classes:
                    raise ValueError("label_info() must give a LabelInfo of the split's classes")
                return info
            return LabelInfo.from_targets(self.classes, ds.targets)
        except Exception as exc:
            raise PluginError(f"dataset '{self.config.dataset.name}': the targets of split "
                              f"{self.config.data.train_split!r} are unusable: "
                              f"{type(exc).__name__}: {exc}") from exc

    @cached_property
    def device(self):
        from .engine.device import select_device

        return select_device(self.config.train.device)

    @cached_property
    def normalizer(self):
        from .engine.device import Normalizer

        return Normalizer(self.config.data.mean, self.config.data.std)

    @cached_property
    def model(self):
        spec = self.config.model
        classes, info = self.classes, self.label_info  # a dataset's failure is the dataset's, not the model's
        import torch

        with torch.random.fork_rng(devices=[]):  # the initialization follows train.seed, and only it:
            torch.manual_seed(self.config.train.seed)  # the same weights in a fresh process or the 5th build
            model = _built(f"model '{spec.name}' failed to build", spec, num_classes=len(classes), info=info)
        return model.to(self.device)

    @cached_property
    def loss(self):
        spec = self.config.loss
        classes, info = self.classes, self.label_info
        return _built(f"loss '{spec.name}' failed to build", spec, num_classes=len(classes), info=info)

    @property
    def metrics(self) -> list:
        """Fresh metric instances, one per ``metrics`` entry."""
        classes = self.classes
        return [_built(f"metric '{m.name}' failed to build", m, num_classes=len(classes), classes=classes)
                for m in self.config.metrics]

    # -- actions -----------------------------------------------------------------------------
    def fit(self, resume: bool = False, *, overwrite: bool = False, force: bool = False,
            cli_flags: list[str] | None = None) -> dict:
        """Train; return the best epoch's metrics (and ``best_epoch``, ``reason``).

        A run folder holds one run: when ``output_dir`` already holds one, ``fit()`` is
        refused unless ``resume=True`` (continue it from ``checkpoints/last.pt``, exactly)
        or ``overwrite=True`` (remove its run files and start clean). A config without
        ``output_dir`` trains into a new ``runs/<name>/version_<n>`` each time. A resume is
        checked against the run's ``config.yaml``: only epochs, logging, checkpoint
        frequency, workers, ``data.on_bad_image`` and hook sections may change; other
        changes are refused unless ``force=True``. ``cli_flags``: set by the CLI, so that
        messages give the command that resumes rather than ``exp.fit(resume=True)``.

        Like ``mlcore train``, it writes ``result.json`` (the best epoch's metrics), and it
        leaves the model holding the best epoch's weights (``checkpoints/best.pt``), so a
        following ``evaluate()`` scores what ``fit`` reported; ``load_checkpoint("last")``
        takes the last epoch's instead.
        """
        from .engine.trainer import Trainer

        summary = Trainer(self, overwrite=overwrite, force=force, cli_flags=cli_flags).fit(resume=resume)
        best = self.checkpoint_path("best")
        if best.is_file():
            self.load_checkpoint(best)
            self._weights_source = f"{best} (the best epoch, {summary.get('best_epoch')}, of this fit)"
        else:  # no epoch had a finite monitored metric
            self._weights_source = f"the last epoch of this fit (no {best.name} was written)"
        return summary

    @property
    def weights_source(self) -> str | None:
        """Where the model's weights come from: a checkpoint loaded, ``fit()``, or None when
        neither happened (then ``evaluate``/``predict`` load the run's ``best.pt``, or warn
        that the weights are untrained). Set it to keep weights you put in ``model`` by hand."""
        return getattr(self, "_weights_source", None)

    @weights_source.setter
    def weights_source(self, value: str | None) -> None:
        self._weights_source = value

    def checkpoint_path(self, name: str = "best.pt") -> Path:
        """A checkpoint of this run: ``"best"``/``"best.pt"``, ``"last"``/``"last.pt"``, or
        another file name under ``output_dir/checkpoints``."""
        name = {"best": "best.pt", "last": "last.pt"}.get(name, name)
        return Path(self.config.output_dir) / "checkpoints" / name

    def load_checkpoint(self, path: str | os.PathLike | None = None, *, contents: Any = None) -> dict:
        """Load model weights: ``"best"`` (the default: the run's ``checkpoints/best.pt``,
        the epoch ``fit`` reported), ``"last"`` (``checkpoints/last.pt``, the latest epoch or
        step), or a path to a checkpoint or weights file (write ``./best`` for a file so
        named). Returns the checkpoint's metadata (classes, epoch, config, ``ema``…) for an
        mlcore checkpoint, else ``{}``. Afterwards ``weights_source`` names the file.
        ``contents``: what ``path`` holds, already read (``from_checkpoint``): not read twice."""
        from .engine.checkpoint import FORMAT
        from .weights import load_weights_file

        if path is None or (isinstance(path, str) and path in ("best", "last")):
            path = self.checkpoint_path(path or "best")
        path = Path(path)
        if not path.is_file():
            hint = (" (train first, or pass --checkpoint)"
                    if path in (self.checkpoint_path("best"), self.checkpoint_path("last")) else "")
            raise MlcoreError(f"checkpoint {str(path)!r} does not exist{hint}")
        # the checkpoint's classes are the truth about its outputs: compared by name with
        # this experiment's (reordered when only the order differs, else an error)
        ckpt = load_weights_file(self.model, str(path), classes=self.classes, contents=contents or None,
                                 what=f"this config's dataset '{self.config.dataset.name}'")
        self._weights_source = str(path)
        return ckpt if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT else {}

    def _weights_for(self, action: str) -> None:
        """Before ``evaluate``/``predict`` on weights never trained nor loaded here: load the
        run's ``best.pt`` when it exists, as the CLI does, and say so; else warn loudly."""
        if self.weights_source is not None:
            return
        import sys
        import warnings

        best = self.checkpoint_path("best")
        if best.is_file():
            from .checkpoint_config import differences_from

            held = self.load_checkpoint(best)
            epoch = f", epoch {held['best_epoch']}" if held.get("best_epoch") is not None else ""
            print(f"mlcore: {action}() uses the run's best weights, {str(best)!r}{epoch} (choose others with "
                  f"load_checkpoint('last' | path))", file=sys.stderr, flush=True)
            differ = differences_from(held, self.config)
            if differ:  # the CLI would score as trained; this experiment follows its config as written
                warnings.warn(f"{str(best)!r} was trained with {'; '.join(differ)}: {action}() follows this "
                              f"config as written; mlcore.from_checkpoint(config) sets up the experiment as "
                              f"the checkpoint was trained (as mlcore evaluate and predict do)", stacklevel=3)
            return
        init = getattr(self.config.model.cfg, "weights", None)
        if init:
            self._weights_source = f"model.weights ({init})"
            print(f"mlcore: {action}() uses the weights of model.weights, {init!r} (no {str(best)!r} yet)",
                  file=sys.stderr, flush=True)
            return
        warnings.warn(f"{action}() runs an UNTRAINED model: it was neither trained (fit) nor loaded "
                      f"(load_checkpoint), and {str(best)!r} does not exist; its scores are those of random "
                      f"weights. Train first, or load_checkpoint(path)", stacklevel=3)
        self._weights_source = "untrained (initial weights)"

    def load_state(self, state: dict, source: str) -> None:
        """Load a state dict (e.g. a checkpoint's ``ema``) into the model, strictly."""
        from .weights import load_state

        load_state(self.model, state, source)

    def split_set(self, split: str):
        """The dataset of ``split`` with the evaluation transform (built once)."""
        if split == "val" or split == self.config.data.val_split:
            return self.val_set
        if split not in self._splits:
            self._splits[split] = self._dataset(split, train=False)
        return self._splits[split]

    def evaluate(self, split: str = "val", *, return_scores: bool = False) -> Any:
        """Metrics of the model on ``split`` (``mAP``, ``ap_list``, the prf keys…).

        The weights: after ``fit()`` the best epoch's, after ``load_checkpoint`` the file's.
        On a model neither trained nor loaded here, the run's ``checkpoints/best.pt`` is
        loaded first when it exists, as ``mlcore evaluate`` does (a line on stderr says
        so); without one, a warning says the weights are untrained (``weights_source``).

        With ``return_scores=True``: ``(metrics, scores)``, scores N×C probabilities.
        """
        from functools import partial

        from .engine.device import autocast
        from .engine.distributed import setup
        from .engine.evaluation import infer

        ds = self.split_set(split)
        self._weights_for("evaluate")
        tc = self.config.train
        scores, metrics = infer(self.model, ds, device=self.device, normalize=self.normalizer,
                                batch_size=tc.eval_batch_size or tc.batch_size, num_workers=tc.num_workers,
                                metrics=self.metrics, skip_bad=self.config.data.on_bad_image == "skip",
                                dist=setup(tc.dist_timeout, self.device),
                                autocast=partial(autocast, tc.amp, self.device))
        return (metrics, scores) if return_scores else metrics

    def predict(self, images: Any, batch_size: int = 32):
        """N×C probabilities for image paths, PIL images, or a uint8 [N,3,H,W] batch.

        Paths and PIL images (any mode: see ``mlcore.data.images``) go through the
        evaluation transform of ``data``; a uint8 batch is used as it is (resize it
        yourself). No image (an empty list or batch) gives a 0×C result.

        The weights are chosen as for :meth:`evaluate`: the run's ``best.pt`` when the
        model was neither trained nor loaded here, else a loud warning (untrained).
        """
        import torch

        from .data.images import pil_to_tensor, read_image

        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise MlcoreError(f"predict expects a uint8 [N,3,H,W] batch, got {images.dtype} "
                                  f"{tuple(images.shape)}")
            batch = images
        else:
            if isinstance(images, (str, os.PathLike)) or hasattr(images, "convert"):
                images = [images]
            tf = self.eval_transform
            tensors = []
            for im in images:
                if not isinstance(im, (str, os.PathLike)) and not hasattr(im, "convert"):
                    raise MlcoreError(f"predict takes image paths, PIL images or a uint8 [N,3,H,W] batch, "
                                      f"got a {type(im).__name__} among the images")
                tensors.append(tf(pil_to_tensor(im) if hasattr(im, "convert") else read_image(im)))
            if not tensors:
                return torch.zeros(0, len(self.classes))
            batch = torch.stack(tensors)
        self._weights_for("predict")
        self.model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(batch), batch_size):
                x = self.normalizer(batch[i:i + batch_size].to(self.device))
                out.append(torch.sigmoid(self.model(x).float()).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))


def build(cfg: "str | os.PathLike | dict | Config", overrides: Iterable[str] = (),
          registry: Registry | None = None) -> Experiment:
    """An Experiment from a config path, a mapping, or a loaded Config (checked first)."""
    return Experiment(load_config(cfg, overrides, registry))


__all__ = ["Experiment", "build"]
