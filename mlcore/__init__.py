"""mlcore: multi-label image recognition with PyTorch, extended through plugins.

The front door::

    import mlcore
    exp = mlcore.build("configs/demo.yaml")     # an Experiment
    exp.fit(); exp.evaluate("val")["mAP"]
    mlcore.create("metric", "map", num_classes=80)
    mlcore.list_plugins("model")

Importing mlcore is light (no torch); heavy parts load when first used.
"""
from __future__ import annotations

from typing import Any

from .errors import ConfigError, MlcoreError, PluginError
from .hookspecs import hookimpl
from .plugin import KINDS, Plugin

__version__ = "0.1.0"

_LAZY = {
    "build": ("experiment", "build"),
    "create": ("experiment", "create"),
    "create_backbone": ("experiment", "create_backbone"),
    "Experiment": ("experiment", "Experiment"),
    "load_config": ("config", "load_config"),
    "Config": ("config", "Config"),
    "LabelInfo": ("labels", "LabelInfo"),
    "ImageListDataset": ("data.dataset", "ImageListDataset"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'mlcore' has no attribute {name!r}")


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


__all__ = ["build", "create", "create_backbone", "list_plugins", "get_plugin", "register", "hookimpl",
           "Plugin", "KINDS", "Experiment", "LabelInfo", "load_config", "Config", "ImageListDataset",
           "MlcoreError", "ConfigError", "PluginError"]
