"""Reading, composing and checking configs.

A config is plain YAML read with ``yaml.safe_load`` (a ``!!python`` tag is an error, so no
code runs from a config). ``_base_: path`` (one or a list, relative to the file) is merged
under the file, recursively; ``--set a.b=value`` overrides after that, the value parsed as
YAML (a mapping replaces the whole section). Every section is then checked against its
schema — the core's for ``data``/``train``, the plugin's for ``dataset``/``model``/
``loss``/``metrics``/``optimizer``/``scheduler`` and the hook sections — and all problems are
reported together, each with its YAML path and the file that set it (the checking
itself is ``config_check.py``). Nothing heavy is imported: plugin objects live in light
modules.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import schema as schema_mod
from .errors import ConfigError
from .plugin import Plugin
from .registry import Registry, default_registry
from .sections import DataSection, TrainSection

SET_SOURCE = "--set"


# -- reading ---------------------------------------------------------------------------
def read_yaml(path: str | os.PathLike) -> dict:
    """One YAML file as a mapping, or a ConfigError naming the file (and line). Read as
    ``utf-8-sig``, so that a byte-order mark never becomes part of the first key."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        full = os.path.abspath(path)
        resolved = f" (resolved: {full!r})" if full != str(path) else ""
        raise ConfigError(f"config file {str(path)!r}{resolved} {what}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: {exc.problem} — configs are plain YAML; tags that would "
                          f"build Python objects are not allowed") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _record_sources(data: Any, source: str, prefix: str, sources: dict[str, str]) -> None:
    for key in [k for k in sources if k == prefix or k.startswith(prefix + ".")]:
        if prefix:
            del sources[key]
    if isinstance(data, dict):
        if prefix:
            sources[prefix] = source
        for k, v in data.items():
            _record_sources(v, source, f"{prefix}.{k}" if prefix else str(k), sources)
    else:
        sources[prefix] = source


def as_section(value: Any) -> Any:
    """A plugin or tagged section given by name alone (``loss: bce``) as ``{name: bce}``."""
    return {"name": value} if isinstance(value, str) else value


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: mappings recursively, all else replaced.

    A mapping that names another plugin than the one below it (``name`` differs) replaces
    it whole: the keys of ``plateau`` mean nothing to ``cosine``.
    """
    out = copy.deepcopy(base)
    for k, v in over.items():
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and v.get("name", old.get("name")) == old.get("name"):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_with_bases(path: Path, chain: tuple[Path, ...], sources: dict[str, str]) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in chain + (path,))
        raise ConfigError(f"_base_ cycle: {cycle}")
    data = read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for b in bases:
        bpath = (path.parent / b)
        if not bpath.is_file():
            raise ConfigError(f"{path}: _base_ file {b!r} does not exist (looked for {bpath})")
        merged = merge(merged, _load_with_bases(bpath, chain + (path,), sources))
    for k, v in data.items():
        _record_sources(v, str(path), str(k), sources)
    return merge(merged, data)


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → ``(["a", "b"], value)`` with the value parsed as YAML."""
    key, eq, text = item.partition("=")
    parts = key.strip().split(".")
    if not eq or not key.strip() or any(not p.strip() for p in parts):
        raise ConfigError(f"--set {item!r}: expected key.path=value (e.g. --set train.epochs=5)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {problem}") from exc
    return [p.strip() for p in parts], value


def apply_set(data: dict, parts: list[str], value: Any, sources: dict[str, str]) -> None:
    node = data
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            if nxt is not None and not (i == 0 and isinstance(nxt, str)):
                raise ConfigError(f"--set {'.'.join(parts)}: '{'.'.join(parts[:i + 1])}' is "
                                  f"{nxt!r}, not a mapping")
            if nxt is None:
                # a mapping the --set brought into being (``trian.epochs=2``): a problem with
                # it (an unknown section name) is the --set's, not the file's
                sources.setdefault(".".join(parts[:i + 1]), SET_SOURCE)
            nxt = as_section(nxt) if isinstance(nxt, str) else {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value
    _record_sources(value, SET_SOURCE, ".".join(parts), sources)


# -- the checked config ----------------------------------------------------------------
@dataclass
class PluginSpec:
    """One plugin section, checked: the plugin, its schema instance and its YAML path.

    ``common`` holds the framework's own keys of the section, where it has some (the
    optimizer's ``backbone_lr_mult``, the scheduler's warm-up); ``distribution`` is the
    package that offers the plugin (for messages).
    """

    kind: str
    name: str
    plugin: Plugin
    cfg: Any
    where: str
    common: Any = None
    distribution: str = ""

    def as_yaml(self) -> dict:
        common = schema_mod.to_dict(self.common) if self.common is not None else {}
        return {"name": self.name, **_plain(common), **_plain(schema_mod.to_dict(self.cfg))}


@dataclass
class Config:
    """A composed and checked config; ``resolved()`` is what lands in config.yaml.

    ``auto_output_root``: set when the config names no ``output_dir``. Its runs then go
    to numbered folders ``runs/<config name>/version_<n>`` (``runs/default/…`` for a
    mapping), a new one for each training run so runs never overwrite each other;
    ``output_dir`` is the newest of them (what evaluate, predict and ``--resume`` use) —
    ``version_0`` before any — and training replaces it with the folder it creates.
    """

    path: str | None
    dataset: PluginSpec
    model: PluginSpec
    loss: PluginSpec
    metrics: list[PluginSpec]
    hooks: list[PluginSpec]
    data: DataSection
    train: TrainSection
    optimizer: PluginSpec
    scheduler: PluginSpec
    output_dir: str
    disabled_hooks: list[str] = field(default_factory=list)
    auto_output_root: str | None = None

    def resolved(self) -> dict:
        out: dict[str, Any] = {
            "dataset": self.dataset.as_yaml(),
            "data": _plain(schema_mod.to_dict(self.data)),
            "model": self.model.as_yaml(),
            "loss": self.loss.as_yaml(),
            "metrics": [m.as_yaml() for m in self.metrics],
            "optimizer": self.optimizer.as_yaml(),
            "scheduler": self.scheduler.as_yaml(),
            "train": _plain(schema_mod.to_dict(self.train)),
            "output_dir": self.output_dir,
        }
        for h in self.hooks:
            out[h.name] = _plain(schema_mod.to_dict(h.cfg))
        for name in self.disabled_hooks:
            out[name] = False
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def compose(source: str | os.PathLike | dict, overrides: Iterable[str] = ()) -> tuple[dict, dict, str | None]:
    """Read a config (file with its bases, or a mapping) and apply ``--set`` items.

    Returns ``(data, sources, path)``; ``sources`` maps YAML paths to the file that set them.
    """
    sources: dict[str, str] = {}
    if isinstance(source, dict):
        path = None
        data = copy.deepcopy(source)
        bases = data.pop("_base_", [])
        merged: dict = {}
        for b in [bases] if isinstance(bases, str) else bases:
            merged = merge(merged, _load_with_bases(Path(b), (), sources))
        for k, v in data.items():
            _record_sources(v, "<dict>", str(k), sources)
        data = merge(merged, data)
    else:
        path = str(source)
        data = _load_with_bases(Path(source), (), sources)
    for item in overrides:
        parts, value = parse_set(item)
        apply_set(data, parts, value, sources)
    return data, sources, path


def load_config(source: "str | os.PathLike | dict | Config", overrides: Iterable[str] = (),
                registry: Registry | None = None, *, check_files: bool = False) -> Config:
    """Compose and check a config; raise one ConfigError listing every problem.

    ``check_files``: also require the local files and folders it names to exist (see
    :func:`mlcore.config_check.check_config`)."""
    if isinstance(source, Config):
        if list(overrides):
            raise ConfigError("--set cannot be applied to an already checked Config; pass a path or dict")
        return source
    from .config_check import check_config

    data, sources, path = compose(source, overrides)
    config = check_config(data, sources, path, registry or default_registry(), files=check_files)
    if data.get("output_dir") is None:  # the default: a numbered folder per run under runs/<name>
        from .engine.run_folder import latest_run

        config.auto_output_root = config.output_dir
        config.output_dir = str(latest_run(config.output_dir))
    return config


__all__ = ["Config", "PluginSpec", "load_config", "compose", "parse_set", "read_yaml", "merge"]
