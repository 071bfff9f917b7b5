"""List the installed plugins: kind, name, distribution, version, summary.

Finding plugins reads distribution metadata only; the summary comes from each plugin's
object, whose module is light by convention (heavy imports happen inside ``build``), so
listing never imports torch for the built-ins. ``--check`` also reports each plugin's
status (``ok``, ``broken`` with its error, ``duplicate``) and exits 1 when any is not ok,
as ``pip check`` does.

``--keys NAME`` shows the config keys one plugin's YAML section takes — type, default
(or ``required``) and doc — which otherwise only error messages reveal. NAME is
``kind/name`` (``model/ssgrl``), ``kind:name``, or a bare name (``ssgrl``; with ``--kind``
only that kind is searched; a bare name offered by several kinds shows each). The core's
sections ``data`` and ``train`` are shown the same way. For ``optimizer`` and
``scheduler`` plugins the framework's keys of the section (``backbone_lr_mult``, warm-up)
follow, marked ``framework``. A key's doc is its field's ``metadata["doc"]`` (or
``"help"``), else the string literal under the field (an attribute docstring), else the
sentence of the schema's docstring that names it in double backquotes. Only the named
plugin's module is imported (plugin modules are light by convention): no torch.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..plugin import KINDS

NAME = "list-plugins"
HELP = "list installed plugins (--check: exit 1 when one is broken)"
TAKES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON list of rows")
    p.add_argument("--check", action="store_true", help="show each plugin's status; exit 1 if any is not ok")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--keys", metavar="NAME",
                   help="show the config keys of one plugin (types, defaults, docs): kind/name (model/ssgrl), "
                        "or a name with --kind; also data, train")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'resnet*'")


def run(args: argparse.Namespace) -> int:
    import fnmatch

    from ..registry import default_registry

    reg = default_registry()
    if args.keys:
        return _show_keys(reg, args.keys, args.kind, args.json)
    records = [r for r in reg.check_all(args.kind) if fnmatch.fnmatchcase(r.name, args.pattern)]
    rows = [r.as_row() for r in records]
    if not args.check:
        for row in rows:
            row.pop("status", None)
            row.pop("error", None)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        cols = ["kind", "name", "distribution", "version"] + (["status"] if args.check else []) + ["summary"]
        table = [[str(r.get(c, "")) for c in cols] for r in rows]
        widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
        for t, r in zip(table, rows):
            print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())
            if args.check and r.get("error"):
                print(f"    {r['error']}")
    bad = [r for r in records if r.status in ("broken", "duplicate")]
    if args.check and bad:
        print(f"mlcore: {len(bad)} plugin(s) not ok: {', '.join(f'{r.kind}:{r.name}' for r in bad)}",
              file=sys.stderr)
        return 1
    return 0


# -- --keys ---------------------------------------------------------------------------------
CORE_SCHEMAS = {"data": "DataSection", "train": "TrainSection"}


def _targets(reg, name: str, kind: str | None) -> list[tuple[str, str, str, type, str]]:
    """``(kind, name, summary, schema, where)`` of what NAME names; a PluginError (exit 2,
    with a "did you mean") when nothing does."""
    from .. import sections
    from ..errors import PluginError, did_you_mean

    for sep in ("/", ":"):
        head, _, rest = name.partition(sep)
        if rest and head in KINDS:
            if kind is not None and kind != head:
                raise PluginError(f"--keys {name!r} names a {head}, but --kind is {kind}")
            kind, name = head, rest
            break
    if kind is None and name in CORE_SCHEMAS:
        schema = getattr(sections, CORE_SCHEMAS[name])
        return [("section", name, f"the core's '{name}' section", schema, "")]
    kinds = [kind] if kind else list(KINDS)
    found = [(k, r) for k in kinds for r in [reg.record_of(k, name)] if r is not None]
    if not found:
        names = sorted({r.name for k in kinds for r in reg.records(k)} | (set() if kind else set(CORE_SCHEMAS)))
        what = f"{kind} plugin" if kind else "plugin or section"
        raise PluginError(f"unknown {what} '{name}'{did_you_mean(name, names)} (see `mlcore list-plugins"
                          f"{' --kind ' + kind if kind else ''}`)")
    out = []
    for k, rec in found:
        plugin = reg.get(k, name)  # imports that one plugin's (light) module
        out.append((k, plugin.name, plugin.summary, plugin.schema, rec.distribution))
    return out


def _common_schema(kind: str) -> type | None:
    """The framework's own keys of a plugin section of ``kind`` (optimizer, scheduler)."""
    from ..config_check import PLUGIN_SECTIONS

    return next((common for _, (k, common) in PLUGIN_SECTIONS.items() if k == kind and common), None)


def key_rows(schema: type, section: str = "plugin") -> list[dict]:
    """One row per config key of ``schema``: key, type, default, required, doc, section."""
    import dataclasses
    import typing

    from ..schema import _type_name

    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # an annotation that cannot be resolved: show it as written
        hints = {}
    attr_docs = _attribute_docs(schema)
    rows = []
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            default = None
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            try:
                default = f.default_factory()  # type: ignore[misc]
            except Exception:
                default = "<computed>"
        tp = hints.get(f.name, f.type)
        doc = (f.metadata.get("doc") or f.metadata.get("help") or attr_docs.get(f.name)
               or _docstring_sentence(schema, f.name) or _metadata_hint(f.metadata))
        rows.append({"key": f.name, "type": _type_name(tp) if not isinstance(tp, str) else tp,
                     "default": _plain(default), "required": required, "doc": " ".join(str(doc or "").split()),
                     "section": section})
    return rows


def _plain(value):
    """A default as JSON can hold it (tuples as lists, other objects as their repr)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _attribute_docs(schema: type) -> dict[str, str]:
    """Attribute docstrings: a string literal right under a field (Sphinx's convention)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(schema)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {}
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    out: dict[str, str] = {}
    if cls is None:
        return out
    for a, b in zip(cls.body, cls.body[1:]):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
            out[a.target.id] = inspect.cleandoc(b.value.value)
    return out


def _docstring_sentence(schema: type, key: str) -> str:
    """The first sentence of the schema's docstring naming ``key`` in double backquotes."""
    import re

    doc = " ".join((schema.__doc__ or "").split())
    if f"``{key}``" not in doc:
        return ""
    for sentence in re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.;])\s+(?=[A-Z`(])", doc):
        if f"``{key}``" in sentence:
            return sentence.replace("``", "")
    return ""


def _metadata_hint(metadata) -> str:
    """What the field's marks say when it has no doc: a plugin name, a local path."""
    if metadata.get("plugin"):
        return f"a {metadata['plugin']} plugin's name"
    if metadata.get("path") == "file":
        return "a local file"
    if metadata.get("path") == "dir":
        return "a local folder"
    return ""


def _show_keys(reg, name: str, kind: str | None, as_json: bool) -> int:
    """``list-plugins --keys NAME``: the keys of each plugin NAME names (see the docstring)."""
    out_rows: list[dict] = []
    blocks = []
    for k, pname, summary, schema, dist in _targets(reg, name, kind):
        rows = key_rows(schema)
        common = _common_schema(k)
        if common is not None:
            rows += key_rows(common, "framework")
        for r in rows:
            out_rows.append({"kind": k, "name": pname, **r})
        blocks.append((k, pname, summary, dist, rows))
    if as_json:
        json.dump(out_rows, sys.stdout, indent=1)
        print()
        return 0
    for i, (k, pname, summary, dist, rows) in enumerate(blocks):
        if i:
            print()
        title = f"{pname}: {summary}" if k == "section" else f"{k} {pname}" + (f" ({dist})" if dist else "") \
            + (f": {summary}" if summary else "")
        print(title)
        if not rows:
            print("  (no keys)")
            continue
        table = [[r["key"], r["type"], "required" if r["required"] else _show(r["default"]),
                  ("[framework] " if r["section"] == "framework" else "") + r["doc"]] for r in rows]
        widths = [max(len(t[i]) for t in table) for i in range(3)]
        for t in table:
            print(("  " + "  ".join(v.ljust(w) for v, w in zip(t[:3], widths)) + "  " + t[3]).rstrip())
    return 0


def _show(value) -> str:
    """A default as it would be written in YAML (flow style, one line)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()
