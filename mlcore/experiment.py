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


class Experiment:
    """Everything one config describes: data, model, loss, metrics, and how to train.

    ``fit()`` trains (``resume=True`` continues from ``output_dir/checkpoints/last.pt``),
    ``evaluate(split)`` scores a split, ``predict(images)`` gives probabilities.
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
        from .data.transforms import TrainTransform

        d = self.config.data
        transform = (TrainTransform(d.scale_size, d.crop_size, d.train_crops, d.hflip, d.randaugment, d.cutout,
                                    d.random_resized_crop)
                     if train else self.eval_transform)
        spec = self.config.dataset
        ds = _built(f"dataset '{spec.name}' failed to build the {split!r} split", spec,
                    split=split, transform=transform)
        # a dense N×C ``targets`` matrix, or — for a dataset too large for one (OpenImages:
        # 9M × 9,605) — its own ``label_info()``; ``images`` (paths) is optional
        for attr in ("classes", "__len__", "__getitem__"):
            if not hasattr(ds, attr):
                raise MlcoreError(f"dataset '{spec.name}' gave an object without '{attr}' for split {split!r}")
        if not hasattr(ds, "targets") and not callable(getattr(ds, "label_info", None)):
            raise MlcoreError(f"dataset '{spec.name}' gave an object with neither 'targets' nor 'label_info()' "
                              f"for split {split!r}")
        if len(ds) == 0:
            raise MlcoreError(f"dataset '{spec.name}': split {split!r} is empty")
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
    def fit(self, resume: bool = False) -> dict:
        """Train; return the best epoch's metrics (and ``best_epoch``, ``reason``)."""
        from .engine.trainer import Trainer

        return Trainer(self).fit(resume=resume)

    def checkpoint_path(self, name: str = "best.pt") -> Path:
        return Path(self.config.output_dir) / "checkpoints" / name

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> dict:
        """Load model weights from ``path`` (default: the run's ``best.pt``)."""
        from .engine.checkpoint import FORMAT
        from .weights import load_weights_file

        path = Path(path) if path is not None else self.checkpoint_path()
        if not path.is_file():
            hint = " (train first, or pass --checkpoint)" if path == self.checkpoint_path() else ""
            raise MlcoreError(f"checkpoint {str(path)!r} does not exist{hint}")
        ckpt = load_weights_file(self.model, str(path))
        return ckpt if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT else {}

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
        """Metrics of the current model on ``split`` (``mAP``, ``ap_list``, the prf keys…).

        With ``return_scores=True``: ``(metrics, scores)``, scores N×C probabilities.
        """
        from functools import partial

        from .engine.device import autocast
        from .engine.distributed import setup
        from .engine.evaluation import infer

        ds = self.split_set(split)
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
