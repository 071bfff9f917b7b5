"""Making one plugin instance by kind and name: ``mlcore.create`` and ``create_backbone``.

The registry finds and loads plugins (``registry.py``); a config composes them into an
Experiment (``experiment.py``); this module is the one front door between the two for a
single instance, as timm keeps ``_registry``, ``_factory`` and ``_builder`` apart. Its
parameters are checked against the plugin's schema first, so a misspelled key is a
``ConfigError`` with a "did you mean", never a ``TypeError`` deep inside a constructor.
"""
from __future__ import annotations

from typing import Any

from . import schema as schema_mod
from .plugin import CONTEXT, build_named
from .problems import Problems
from .registry import default_registry


def create(kind: str, name: str, **params: Any) -> Any:
    """One plugin instance, its parameters checked against the plugin's schema.

    The context names of the kind (``split``/``transform`` for datasets, ``num_classes``
    and ``info`` for models and losses, ``num_classes``/``classes`` for metrics) may be
    passed as keywords too, e.g. ``create("dataset", "coco", root="data/coco",
    split="val")`` or ``create("metric", "map", num_classes=80)``.
    """
    plugin = default_registry().get(kind, name)
    context = {k: params.pop(k) for k in CONTEXT[kind] if k in params}
    problems = Problems()
    cfg = schema_mod.check(plugin.schema, params, "", problems, what=f"{kind} '{name}'")
    problems.raise_if_any()
    if kind == "dataset":
        context.setdefault("split", "train")
        context.setdefault("transform", None)
    if kind == "backbone" and "/" in name:
        context["variant"] = name.split("/", 1)[1]
    if kind in ("model", "loss"):
        context.setdefault("info", None)
    return build_named(plugin, cfg, f"{kind} '{name}' failed to build", **context)


def create_backbone(spec: str, *, freeze: str = "none", **params: Any) -> Any:
    """A backbone by name (``resnet101``, ``timm/convnext_tiny``) — for model plugins.

    ``freeze`` is the framework's policy (:data:`mlcore.FREEZE_POLICIES`): ``none``,
    ``all``, or ``all_but_last`` (only the backbone's ``last_stage()`` trains; a backbone
    that declares no stages trains whole, with a warning). ``params`` are the backbone
    plugin's keys (``pretrained``, …), checked against its schema.
    """
    from .freezing import freeze_backbone

    backbone = create("backbone", spec, **params)
    freeze_backbone(backbone, freeze)
    return backbone


__all__ = ["create", "create_backbone"]
