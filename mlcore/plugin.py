"""The plugin object: what every dataset, model, backbone, loss, metric, optimizer,
scheduler and hook plugin is.

A plugin declares its kind, its name, a one-line summary, a config schema (a dataclass)
and a build function. Keep the module that defines a plugin object light: import torch
and friends inside ``build``, so that listing plugins and checking configs stay instant.

Third-party authors may also point an entry point at a plain class or function; it is
wrapped by :func:`as_plugin`, with its signature as the schema.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .schema import schema_from_signature, to_dict

KINDS = ("dataset", "model", "backbone", "loss", "metric", "optimizer", "scheduler", "hook")

#: The names a builder may receive besides the config, per kind. A build function (or a
#: plain plugin callable) gets each one only when its signature takes it.
CONTEXT = {
    "dataset": ("split", "transform"),
    "model": ("num_classes", "info"),
    "backbone": ("variant",),
    "loss": ("num_classes", "info"),
    "metric": ("num_classes", "classes"),
    "optimizer": ("params",),
    "scheduler": ("optimizer", "epochs", "steps_per_epoch"),
    "hook": (),
}


@dataclass(frozen=True)
class Plugin:
    """A plugin of one kind.

    kind: one of :data:`KINDS`.
    name: the name used in YAML (the entry-point name).
    summary: one line for ``mlcore list-plugins``.
    schema: a dataclass; the keys its YAML section may hold.
    build: ``build(cfg, **context)`` → the instance; ``cfg`` is a ``schema`` instance and
        the context holds, of :data:`CONTEXT` for this kind, the names it takes.
    namespace: when true, this plugin serves every ``name/<variant>`` (e.g. ``timm``).
    """

    kind: str
    name: str
    summary: str
    schema: type
    build: Callable[..., Any]
    namespace: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown value {self.kind!r} for argument kind. Valid values are {set(KINDS)}")
        if not dataclasses.is_dataclass(self.schema):
            raise TypeError(f"plugin {self.kind}:{self.name}: schema must be a dataclass")

    def instantiate(self, cfg: Any, **context: Any) -> Any:
        """Call ``build`` with the config and the context names its signature takes."""
        return self.build(cfg, **accepted(self.build, context))


def build_named(plugin: "Plugin", cfg: Any, what: str, **context: Any) -> Any:
    """``plugin.instantiate(cfg, **context)``, its failures attributed to it: a plugin's own
    MlcoreError passes through unchanged; any other exception becomes a PluginError
    saying ``what`` failed (e.g. "loss 'bce' failed to build"), the original chained."""
    from .errors import MlcoreError, PluginError

    try:
        return plugin.instantiate(cfg, **context)
    except MlcoreError:
        raise
    except Exception as exc:
        raise PluginError(f"{what}: {type(exc).__name__}: {exc}") from exc


def accepted(fn: Callable, context: dict) -> dict:
    """The items of ``context`` whose names ``fn`` takes (all of them for ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(context)
    return {k: v for k, v in context.items() if k in params}


def as_plugin(kind: str, name: str, obj: Any) -> Plugin:
    """``obj`` if it is a Plugin, else a Plugin wrapping a plain class or function.

    A plain callable receives its YAML section's keys (all but ``name``) as keyword
    arguments, plus the context names of its kind (``num_classes``, ``info``, …) that
    its signature takes. A plain hook plugin is any object (often a module) holding
    ``hookimpl`` functions; it takes no settings.
    """
    if isinstance(obj, Plugin):
        if obj.kind != kind:
            raise TypeError(f"entry point {name!r} in the {kind} group gives a {obj.kind} plugin")
        return obj if obj.name == name else dataclasses.replace(obj, name=name)
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    summary = doc[0] if doc else ""
    if kind == "hook" and not callable(obj):
        empty = dataclasses.make_dataclass(f"{name}_schema", [])
        return Plugin(kind, name, summary, empty, lambda cfg: obj)
    if not callable(obj):
        raise TypeError(f"{kind} plugin {name!r} is neither a Plugin nor callable: {obj!r}")
    skip = set(CONTEXT[kind])
    schema = schema_from_signature(obj, name, skip)

    def build(cfg: Any, **context: Any) -> Any:
        return obj(**to_dict(cfg), **accepted(obj, context))

    return Plugin(kind, name, summary, schema, build)
