"""Finding and loading plugins through entry points.

Two separate steps, as flake8 does it:

* **finding** reads installed distributions' metadata only (``importlib.metadata``): no
  plugin module is imported and torch is not imported, so listing plugins is instant;
* **loading** imports one plugin on its first use and caches it. A plugin whose import
  fails is marked ``broken``, naming its distribution and chaining the original error;
  every other plugin keeps working.

One name offered by two distributions is marked ``duplicate`` and using it is an error
naming both. ``MLCORE_DISABLE_PLUGINS=kind:name,…`` switches plugins off.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import PluginError, did_you_mean
from .plugin import KINDS, Plugin, as_plugin

GROUPS = {"dataset": "mlcore.datasets", "model": "mlcore.models", "backbone": "mlcore.backbones",
          "loss": "mlcore.losses", "metric": "mlcore.metrics", "optimizer": "mlcore.optimizers",
          "scheduler": "mlcore.schedulers", "hook": "mlcore.hooks"}
DISABLE_ENV = "MLCORE_DISABLE_PLUGINS"
IN_PROCESS = "<registered in-process>"


@dataclass
class PluginRecord:
    """What is known of a plugin from metadata, and its load status once loaded.

    status: ``ok`` (found; loads fine or not yet tried), ``broken`` (its import failed),
    ``duplicate`` (offered by several distributions: ``offered_by``), ``disabled``.
    """

    kind: str
    name: str
    value: str
    distribution: str
    version: str
    status: str = "ok"
    error: str | None = None
    offered_by: tuple[str, ...] = ()
    entry_point: Any = field(default=None, repr=False, compare=False)
    plugin: Plugin | None = field(default=None, repr=False, compare=False)

    def as_row(self) -> dict:
        """The JSON row of ``mlcore list-plugins --json``."""
        namespace = self.plugin is not None and self.plugin.namespace
        row = {"kind": self.kind, "name": self.name + ("/*" if namespace else ""),
               "summary": self.plugin.summary if self.plugin else "",
               "distribution": self.distribution, "version": self.version, "status": self.status}
        if self.error:
            row["error"] = self.error
        return row


def parse_disabled(text: str | None) -> set[tuple[str, str]]:
    """``"model:resnet18, hook:progress"`` → ``{("model", "resnet18"), ("hook", "progress")}``."""
    out = set()
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        kind, _, name = item.partition(":")
        if kind not in KINDS or not name:
            raise PluginError(f"{DISABLE_ENV}: cannot read {item!r}; write kind:name with kind one of "
                              f"{', '.join(KINDS)} (e.g. hook:progress)")
        out.add((kind, name))
    return out


def _dist_of(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>", ""
    return dist.metadata["Name"] or dist.name, dist.version or ""


def _natural(name: str) -> list:
    """Sort key that puts resnet18 before resnet101."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


class Registry:
    """The plugins of one process: found from entry points, loaded on first use.

    ``entry_points`` defaults to the installed ones; tests pass their own
    ``importlib.metadata.EntryPoint`` objects. ``disabled`` defaults to the
    ``MLCORE_DISABLE_PLUGINS`` environment variable.
    """

    def __init__(self, entry_points: Iterable[Any] | None = None, disabled: str | None = None):
        self._given = None if entry_points is None else list(entry_points)
        self._disabled_text = os.environ.get(DISABLE_ENV, "") if disabled is None else disabled
        self._records: dict[tuple[str, str], PluginRecord] | None = None

    # -- finding (metadata only) -------------------------------------------------------
    def _entry_points(self) -> list[Any]:
        if self._given is not None:
            return self._given
        eps = md.entry_points()
        return [ep for group in GROUPS.values() for ep in eps.select(group=group)]

    def _find(self) -> dict[tuple[str, str], PluginRecord]:
        if self._records is not None:
            return self._records
        disabled = parse_disabled(self._disabled_text)
        kind_of = {g: k for k, g in GROUPS.items()}
        records: dict[tuple[str, str], PluginRecord] = {}
        for ep in self._entry_points():
            kind = kind_of.get(ep.group)
            if kind is None:
                continue
            dist, version = _dist_of(ep)
            key = (kind, ep.name)
            old = records.get(key)
            if old is not None:
                if _normalize(old.distribution) == _normalize(dist):
                    continue  # one distribution seen twice on sys.path (editable installs)
                old.status = "duplicate"
                old.offered_by = old.offered_by + (dist,)
                old.error = (f"offered by {len(old.offered_by)} distributions: "
                             f"{', '.join(old.offered_by)}; uninstall all but one")
                continue
            records[key] = PluginRecord(kind, ep.name, ep.value, dist, version,
                                        offered_by=(dist,), entry_point=ep)
        for key in disabled & records.keys():
            if records[key].status == "ok":
                records[key].status = "disabled"
                records[key].error = f"switched off by {DISABLE_ENV}"
        self._records = records
        return records

    def records(self, kind: str | None = None) -> list[PluginRecord]:
        """Every plugin found, sorted by kind then name, without importing any."""
        if kind is not None and kind not in KINDS:
            raise PluginError(f"Unknown value {kind!r} for argument kind. Valid values are {set(KINDS)}")
        rows = [r for r in self._find().values() if kind is None or r.kind == kind]
        return sorted(rows, key=lambda r: (KINDS.index(r.kind), _natural(r.name)))

    # -- loading -----------------------------------------------------------------------
    def _record(self, kind: str, name: str) -> PluginRecord:
        if kind not in KINDS:
            raise PluginError(f"Unknown value {kind!r} for argument kind. Valid values are {set(KINDS)}")
        base = name.split("/", 1)[0] if "/" in name else name
        rec = self._find().get((kind, base))
        if rec is None:
            names = sorted(n for (k, n) in self._find() if k == kind)
            raise PluginError(f"unknown {kind} '{name}'{did_you_mean(name, names)}; "
                              f"available: {', '.join(names) or 'none'} (see `mlcore list-plugins`)")
        if rec.status == "duplicate":
            raise PluginError(f"{kind} plugin '{base}' is {rec.error}")
        if rec.status == "disabled":
            raise PluginError(f"{kind} plugin '{base}' is {rec.error}")
        return rec

    def record_of(self, kind: str, name: str) -> PluginRecord | None:
        """The record of that plugin (``ns/variant`` gives the namespace's), or None."""
        return self._find().get((kind, name.split("/", 1)[0]))

    def load(self, rec: PluginRecord) -> Plugin:
        """Import one plugin (once); on failure mark it broken and raise PluginError."""
        if rec.plugin is not None:
            return rec.plugin
        if rec.status == "broken":
            raise PluginError(self._broken_message(rec))
        try:
            obj = rec.entry_point.load()
            rec.plugin = as_plugin(rec.kind, rec.name, obj)
        except Exception as exc:  # any import-time failure: isolate it to this plugin
            rec.status = "broken"
            rec.error = f"{type(exc).__name__}: {exc}"
            raise PluginError(self._broken_message(rec)) from exc
        return rec.plugin

    @staticmethod
    def _broken_message(rec: PluginRecord) -> str:
        return (f"{rec.kind} plugin '{rec.name}' from distribution '{rec.distribution}' "
                f"({rec.value}) failed to load: {rec.error}")

    def get(self, kind: str, name: str) -> Plugin:
        """The plugin of that kind and name (``ns/variant`` gives the namespace plugin)."""
        rec = self._record(kind, name)
        plugin = self.load(rec)
        if "/" in name and not plugin.namespace:
            raise PluginError(f"{kind} plugin '{rec.name}' is not a namespace; "
                              f"'{name}' cannot be resolved (use '{rec.name}')")
        return plugin

    def check_all(self, kind: str | None = None) -> list[PluginRecord]:
        """Load every plugin, noting which are broken; never raises for a broken one."""
        rows = self.records(kind)
        for rec in rows:
            if rec.status == "ok":
                try:
                    self.load(rec)
                except PluginError:
                    pass
        return rows

    def register(self, kind: str, name: str, obj: Any, *, replace: bool = False) -> Plugin:
        """Register a plugin in this process only (notebooks, tests).

        A name already offered by an installed distribution is an error unless
        ``replace=True``; a name registered in-process before is replaced.
        """
        records = self._find()
        plugin = as_plugin(kind, name, obj)
        old = records.get((kind, name))
        if old is not None and old.distribution != IN_PROCESS and not replace:
            raise PluginError(f"{kind} plugin '{name}' is already offered by distribution "
                              f"'{old.distribution}'; pass replace=True to shadow it")
        records[(kind, name)] = PluginRecord(kind, name, repr(obj), IN_PROCESS, "", plugin=plugin,
                                             offered_by=(IN_PROCESS,))
        return plugin


_default: Registry | None = None


def default_registry() -> Registry:
    """The process's registry of installed plugins (created on first use)."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
