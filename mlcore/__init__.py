"""mlcore: multi-label image recognition with PyTorch, extended through plugins.

The front door::

    import mlcore
    exp = mlcore.build("configs/demo.yaml")     # an Experiment
    exp.fit(); exp.evaluate("val")["mAP"]
    exp = mlcore.from_checkpoint("configs/demo.yaml")  # scores as best.pt was trained
    mlcore.create("metric", "map", num_classes=80)
    mlcore.list_plugins("model")

This module is also **the public surface for plugin authors** (as ``pytest.*`` is for
pytest plugins): everything a dataset, model, backbone, loss, metric, optimizer,
scheduler or hook plugin needs is importable from ``mlcore`` itself, and the built-in
plugins import nothing below it. Names below ``mlcore.`` (``mlcore.engine``,
``mlcore.data.index``, …) are internal and may move.

Importing mlcore is light (no torch, no numpy); the heavy names load when first used.
"""
from __future__ import annotations

from typing import Any

from .errors import ConfigError, MlcoreError, PluginError
from .hookspecs import hookimpl
from .plugin import KINDS, Plugin

__version__ = "0.1.0"

#: public name -> (module below mlcore, attribute); imported on first access
_LAZY = {
    # building things
    "build": ("experiment", "build"),
    "from_checkpoint": ("checkpoint_config", "from_checkpoint"),
    "Experiment": ("experiment", "Experiment"),
    "create": ("factory", "create"),
    "create_backbone": ("factory", "create_backbone"),
    "load_config": ("config", "load_config"),
    "Config": ("config", "Config"),
    # what models know of the labels
    "LabelInfo": ("labels", "LabelInfo"),
    "label_vectors": ("wordvectors", "label_vectors"),
    "label_words": ("wordvectors", "label_words"),
    # weights
    "WeightLayout": ("weights", "WeightLayout"),
    "read_weights": ("weights", "read_weights"),
    "load_weights": ("weights", "load_weights"),
    "weights_classes_field": ("weights", "weights_classes_field"),
    "load_state": ("weights", "load_state"),
    "freeze_backbone": ("freezing", "freeze_backbone"),
    "FREEZE_POLICIES": ("freezing", "FREEZE_POLICIES"),
    # dataset readers
    "ImageListDataset": ("data.dataset", "ImageListDataset"),
    "read_image": ("data.images", "read_image"),
    "BadImageError": ("data.images", "BadImageError"),
    "LabelIndex": ("data.index", "LabelIndex"),
    "SplitIndex": ("data.index", "SplitIndex"),
    "cached_index": ("data.index", "cached_index"),
    "targets_from_lists": ("data.index", "targets_from_lists"),
    "dataset_from_index": ("data.index", "dataset_from_index"),
    "default_eval_transform": ("data.transforms", "default_eval_transform"),
    "decode_json": ("data.jsonfile", "decode"),
    # files
    "cache_dir": ("cache", "cache_dir"),
    "atomic_open": ("files", "atomic_open"),
    "write_text": ("files", "write_text"),
    "write_bytes": ("files", "write_bytes"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mlcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def list_plugins(kind: str | None = None, pattern: str = "*") -> list:
    """Found plugins (metadata only, nothing imported), optionally of one kind and
    matching a shell-style ``pattern`` such as ``"resnet*"``."""
    import fnmatch

    from .registry import default_registry

    return [r for r in default_registry().records(kind) if fnmatch.fnmatchcase(r.name, pattern)]


def get_plugin(kind: str, name: str) -> Plugin:
    """The loaded plugin object of that kind and name."""
    from .registry import default_registry

    return default_registry().get(kind, name)


def register(kind: str, name: str, obj: Any, *, replace: bool = False) -> Plugin:
    """Register a plugin (a Plugin, class or function) in this process only."""
    from .registry import default_registry

    return default_registry().register(kind, name, obj, replace=replace)


__all__ = ["list_plugins", "get_plugin", "register", "hookimpl", "Plugin", "KINDS", "MlcoreError",
           "ConfigError", "PluginError", *_LAZY]
