"""Checking a composed config: every section against its schema, every problem at once.

The core's sections (``data``, ``train``) have the core's schemas (``sections.py``); a
plugin section (``dataset``, ``model``, ``loss``, each of ``metrics``, ``optimizer``,
``scheduler``) names its plugin and is checked against that plugin's schema — beside the
framework's own keys of the optimizer (``backbone_lr_mult``) and scheduler (warm-up)
sections; each installed hook plugin reads the top-level section of its name. Problems
go to one :class:`~mlcore.problems.Problems` collector and end in one ConfigError.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

from . import schema as schema_mod
from .config import Config, PluginSpec, as_section, merge
from .errors import PluginError, did_you_mean
from .problems import Problems
from .registry import PluginRecord, Registry
from .sections import DataSection, OptimizerCommon, SchedulerCommon, TrainSection

#: section -> (plugin kind, the framework's own keys of the section or None)
PLUGIN_SECTIONS: dict[str, tuple[str, type | None]] = {
    "dataset": ("dataset", None),
    "model": ("model", None),
    "loss": ("loss", None),
    "optimizer": ("optimizer", OptimizerCommon),
    "scheduler": ("scheduler", SchedulerCommon),
}
CORE_SECTIONS = ("dataset", "data", "model", "loss", "metrics", "optimizer", "scheduler", "train", "output_dir")
REQUIRED = ("dataset", "model")
DEFAULTS: dict[str, Any] = {
    "data": {},
    "loss": {"name": "bce"},
    "metrics": ["map", "prf"],
    "optimizer": {"name": "adam"},
    "scheduler": {"name": "plateau"},
    "train": {},
}


def check_config(data: dict, sources: dict[str, str], path: str | None, registry: Registry,
                 files: bool = False) -> Config:
    """The checked :class:`Config` of a composed mapping, or one ConfigError listing
    every problem (``sources`` maps YAML paths to the file that set them).

    With ``files``, the local files and folders the config names (plugin keys marked
    ``field(metadata={"path": "file"})`` or ``{"path": "dir"}``) must exist too — what
    ``mlcore check`` adds to the checks every command makes.
    """
    return _Checker(data, sources, path, registry, files).run()


class _Checker:
    def __init__(self, data: dict, sources: dict[str, str], path: str | None, registry: Registry,
                 files: bool = False):
        self.data, self.sources, self.path, self.registry = data, sources, path, registry
        self.files = files
        self.main_file = path or "<dict>"
        self.problems = Problems(self.locate)
        self.full = merge(DEFAULTS, data)

    def locate(self, p: str) -> str:
        while p:
            if p in self.sources:
                return self.sources[p]
            p = p.rpartition(".")[0]
        return self.main_file

    def run(self) -> Config:
        hook_records = self.registry.records("hook")
        self._check_section_names([r.name for r in hook_records])
        specs = {sec: self.plugin_spec(kind, self.full[sec], sec, common)
                 for sec, (kind, common) in PLUGIN_SECTIONS.items() if sec in self.full}
        metrics = self._metrics()
        data_cfg = self.core("data", DataSection)
        train_cfg = self.core("train", TrainSection)
        hooks, disabled = self._hooks(hook_records)
        output_dir = self._output_dir()
        self.problems.raise_if_any()
        return Config(self.path, specs["dataset"], specs["model"], specs["loss"], metrics, hooks,  # type: ignore[arg-type]
                      data_cfg, train_cfg, specs["optimizer"], specs["scheduler"], output_dir, disabled)

    def _check_section_names(self, hook_names: list[str]) -> None:
        valid = list(CORE_SECTIONS) + hook_names
        for key in self.data:
            if key not in valid:
                self.problems.add(str(key), f"unknown section '{key}'{did_you_mean(str(key), valid)}; "
                                            f"valid sections: {', '.join(valid)}")
        for required in REQUIRED:
            if required not in self.data:
                self.problems.add(required, f"missing required section '{required}'")

    def plugin_spec(self, kind: str, value: Any, where: str, common: type | None = None) -> PluginSpec | None:
        """A plugin section: ``name`` picks the plugin, the other keys are its schema's —
        or, for the keys of ``common``, the framework's."""
        value = as_section(value)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            self.problems.add(where, f"expected a {kind} name or a mapping with 'name', got {value!r}")
            return None
        name = value["name"]
        try:
            plugin = self.registry.get(kind, name)
        except PluginError as exc:
            self.problems.add(f"{where}.name", str(exc))
            return None
        body = {k: v for k, v in value.items() if k != "name"}
        common_cfg = None
        if common is not None:
            own = {f.name for f in dataclasses.fields(common)}
            common_cfg = schema_mod.check(common, {k: v for k, v in body.items() if k in own}, where, self.problems)
            body = {k: v for k, v in body.items() if k not in own}
        cfg = schema_mod.check(plugin.schema, body, where, self.problems, what=f"{kind} '{name}'")
        self._hint_mapping_form(value, body, plugin.schema, where, own if common is not None else set())
        if cfg is None or (common is not None and common_cfg is None):
            return None
        self._check_references(cfg, where)
        rec = self.registry.record_of(kind, name)
        return PluginSpec(kind, name, plugin, cfg, where, common_cfg, rec.distribution if rec else "")

    def _hint_mapping_form(self, value: dict, body: dict, schema: type, where: str, own: set[str]) -> None:
        """``--set optimizer.name=sgd`` keeps the file's other keys of the section (adam's
        ``betas``): when the new plugin does not take some of them, say how to replace the
        whole section instead — the mapping form, with the keys that still apply."""
        from .config import SET_SOURCE

        if self.sources.get(f"{where}.name") != SET_SOURCE:
            return
        valid = {f.name for f in dataclasses.fields(schema) if f.init} | own
        stale = [k for k in body if k not in valid and self.sources.get(f"{where}.{k}") != SET_SOURCE]
        if not stale:
            return
        import yaml

        keep = {k: v for k, v in value.items() if k == "name" or k in valid}
        flow = yaml.safe_dump(keep, default_flow_style=True, sort_keys=False, width=10**6).strip()
        self.problems.add(f"{where}.name", f"--set {where}.name={value['name']} keeps the section's other keys "
                                           f"from {self.locate(where)} ({', '.join(map(str, stale))}); to replace "
                                           f"the whole section give it as a mapping: --set '{where}={flow}'")

    def _check_references(self, cfg: Any, where: str) -> None:
        """Fields marked ``metadata={"plugin": kind}`` name another plugin: check it exists.
        With ``files``, fields marked ``metadata={"path": "file" | "dir"}`` name a local
        file or folder: check it is there. The one rule of relative paths: a path is
        relative to the working directory, except one marked ``"relative_to": "<field>"``
        (a dataset's ``image_root``, ``label_file``…), which is relative to that field's
        folder (``root``) — as the plugin reads it; a message shows the path as written
        and as resolved."""
        for f in dataclasses.fields(cfg):
            kind = f.metadata.get("plugin")
            value = getattr(cfg, f.name)
            if kind and isinstance(value, str):
                try:
                    self.registry.get(kind, value)
                except PluginError as exc:
                    self.problems.add(f"{where}.{f.name}", str(exc))
            wanted = f.metadata.get("path")
            if self.files and wanted and isinstance(value, str):
                base = f.metadata.get("relative_to")
                base_value = getattr(cfg, base, None) if base else None
                if base and not (isinstance(base_value, str) and os.path.isdir(base_value)):
                    continue  # its base is missing: the base's own problem says it
                problem = _path_problem(value, wanted, base_value, base)
                if problem:
                    self.problems.add(f"{where}.{f.name}", problem)

    def _metrics(self) -> list[PluginSpec]:
        value = self.full["metrics"]
        if not isinstance(value, list) or not value:
            self.problems.add("metrics", f"expected a non-empty list of metric names or mappings, got {value!r}")
            return []
        return [self.plugin_spec("metric", m, f"metrics[{i}]") for i, m in enumerate(value)]  # type: ignore[misc]

    def core(self, where: str, schema: type) -> Any:
        value = self.full[where]
        return schema_mod.check(schema, value if value is not None else {}, where, self.problems)

    def _hooks(self, records: list[PluginRecord]) -> tuple[list[PluginSpec], list[str]]:
        """Every installed hook is active unless its section is ``false``. A hook that is
        switched off, offered twice or broken keeps its section legal: a warning says it
        is ignored, and unrelated work goes on."""
        hooks, disabled = [], []
        for rec in records:
            section = self.data.get(rec.name, {})
            if section is False:
                disabled.append(rec.name)
                continue
            if rec.status == "ok":
                try:
                    plugin = self.registry.load(rec)
                except PluginError:
                    pass
            if rec.status == "disabled" and rec.name not in self.data:
                continue  # switched off on purpose: nothing to say
            if rec.status != "ok":
                given = f"its section '{rec.name}' is ignored; " if rec.name in self.data else ""
                warnings.warn(f"hook plugin '{rec.name}' from distribution '{rec.distribution}' is not active "
                              f"({given}{rec.error})", stacklevel=3)
                continue
            cfg = schema_mod.check(plugin.schema, section if section is not None else {}, rec.name, self.problems,
                                   what=f"hook '{rec.name}'")
            if cfg is not None:
                hooks.append(PluginSpec("hook", rec.name, plugin, cfg, rec.name, distribution=rec.distribution))
        return hooks, disabled

    def _output_dir(self) -> str:
        output_dir = self._output_dir_value()
        if self.files and isinstance(output_dir, str) and os.path.exists(output_dir) and not os.path.isdir(output_dir):
            self.problems.add("output_dir", f"{output_dir!r} is a file, not a folder")
        return output_dir

    def _output_dir_value(self) -> str:
        output_dir = self.full.get("output_dir")
        if output_dir is None:
            return os.path.join("runs", Path(self.path).stem if self.path else "default")
        if not isinstance(output_dir, str) or not output_dir:
            self.problems.add("output_dir", f"expected a folder path, got {output_dir!r}")
        return output_dir


def resolved_path(value: str, base: str | None = None) -> str:
    """The absolute path a config's ``value`` names: relative to ``base`` (a folder) when
    given, else to the working directory; an absolute ``value`` as it is."""
    return os.path.normpath(os.path.join(os.path.abspath(base) if base else os.getcwd(), value))


def shown_path(value: str, base: str | None = None, base_name: str | None = None) -> str:
    """``value`` as written and, when it differs, as resolved — so that a relative path
    read from an unexpected folder is seen at once."""
    full = resolved_path(value, base)
    if full == value:
        return repr(value)
    start = f"relative to {base_name}" if base_name else "relative to the working directory"
    return f"{value!r} (resolved: {full!r}, {start})" if not os.path.isabs(value) else f"{value!r} ({full!r})"


def _path_problem(value: str, wanted: str, base: str | None = None,
                  base_name: str | None = None) -> str | None:
    """Why ``value`` (relative to ``base``, else the working directory) is not an
    existing file (``wanted == "file"``) or folder, or None."""
    full, named = resolved_path(value, base), shown_path(value, base, base_name)
    if wanted == "dir":
        if os.path.isdir(full):
            return None
        return (f"{named} is a file, not a folder" if os.path.exists(full)
                else f"folder {named} does not exist")
    if os.path.isfile(full):
        return None
    return f"{named} is a folder, not a file" if os.path.exists(full) else f"file {named} does not exist"


__all__ = ["check_config", "CORE_SECTIONS", "DEFAULTS"]
