"""Checking a config mapping against a dataclass schema, collecting every problem.

A plugin's schema is a dataclass: field names are the allowed keys, fields without a
default are required, annotations are the types. A ``float`` is a finite number: NaN and
±inf (YAML's ``.nan``, ``.inf``, or ``1e999``) are refused everywhere; a field that means
to allow them says so with an ``Any`` annotation and its own ``validate()``. ``check`` reports unknown keys (with a
"did you mean"), missing keys and wrong types, each with its YAML path, and returns the
dataclass instance. It imports nothing heavy, so a config is checked before torch loads.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from typing import Any, Callable, Literal, Union

from .errors import did_you_mean
from .problems import Problems


def field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                "list": "list", "dict": "mapping", "tuple": "list"}.get(tp.__name__, tp.__name__)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return str(tp)


_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _numeric_text(value: Any) -> bool:
    """``"5e-4"``: YAML 1.1 (PyYAML) reads exponent numbers without a dot as strings;
    where a number is expected they are read as the number the user meant."""
    return isinstance(value, str) and bool(_FLOAT_TEXT.match(value.strip()))


def _value_problem(value: Any, tp: Any) -> str | None:
    """None when ``value`` fits ``tp``, else why not (a short phrase)."""
    if tp is Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        problems = [_value_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        near = [p for p in problems if p == "expected a finite number"]  # a number, but NaN or ±inf
        return near[0] if near else f"expected {_type_name(tp)}"
    if origin is Literal:
        return None if value in args else f"expected {_type_name(tp)}"
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return f"expected {_type_name(tp)}"
        inner = args[0] if args else Any
        for i, v in enumerate(value):
            p = _value_problem(v, inner)
            if p:
                return f"item {i}: {p}"
        return None
    if origin is dict or tp is dict:
        return None if isinstance(value, dict) else "expected a mapping"
    if tp is type(None):
        return None if value is None else "expected null"
    if tp is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) or _numeric_text(value)
        if ok and not math.isfinite(float(value)):
            return "expected a finite number"
        return None if ok else "expected a number"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -2**63 <= value < 2**63:  # what torch and numpy can hold
            return "expected an integer of at most 19 digits"
        return None if ok else "expected an integer"
    if tp is str:
        return None if isinstance(value, str) else "expected a string"
    if isinstance(tp, type):
        return None if isinstance(value, tp) else f"expected {_type_name(tp)}"
    return None


def _coerce(value: Any, tp: Any) -> Any:
    """YAML gives ints where floats are meant (``lr: 1``), strings for ``5e-4``, and
    lists for tuples."""
    origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, int) and not isinstance(value, bool) or _numeric_text(value):
            return float(value)
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _value_problem(value, arg) is None:
                return _coerce(value, arg)
        return value
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        items = [_coerce(v, args[0]) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    return value


def check(schema: type, data: Any, where: str, problems: Problems, what: str = "") -> Any:
    """Check ``data`` against ``schema``, noting every problem in ``problems``.

    ``where`` is the YAML path of ``data`` (e.g. ``"model"``; ``""`` for keyword
    arguments), ``what`` names the plugin for the messages. Returns the schema instance,
    or None when ``data`` had problems.
    """
    start = len(problems)
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    label = f" for {what}" if what else ""

    def say(key: str, msg: str) -> None:
        problems.add(f"{where}.{key}" if where else key, msg)

    if not isinstance(data, dict):
        problems.add(where, f"expected a mapping, got {data!r}")
        return None
    bad_keys = set()
    for key in data:
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "none"
            say(str(key), f"unknown key '{key}'{label}{did_you_mean(str(key), fields)}; valid keys: {valid}")
    required = {name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    for name in fields:
        if name not in data:
            if name in required:
                say(name, f"missing required key '{name}'{label}")
            continue
        problem = _value_problem(data[name], hints.get(name, Any))
        if problem:
            say(name, f"{problem}, got {data[name]!r}")
            bad_keys.add(name)
    if required - (data.keys() - bad_keys):  # a required key missing or of a wrong type
        return None
    # range checks run on the well-typed keys too, so one pass reports everything
    kwargs = {k: _coerce(v, hints.get(k, Any)) for k, v in data.items() if k in fields and k not in bad_keys}
    instance = schema(**kwargs)
    for name, f in fields.items():  # a key that means nothing without another (metadata "requires")
        need = f.metadata.get("requires")
        if need and data.get(name) is not None and getattr(instance, need, None) is None and name not in bad_keys:
            say(name, f"{f.metadata.get('why', 'needs')} {where + '.' if where else ''}{need}, which is not set")
    validate = getattr(instance, "validate", None)
    if callable(validate):  # range checks a type cannot express (lr > 0, batch_size >= 1)
        for key, msg in validate() or []:
            if key not in bad_keys:
                say(key, msg)
    return instance if len(problems) == start else None


def schema_from_signature(obj: Callable, name: str, skip: set[str]) -> type:
    """A dataclass whose fields are ``obj``'s keyword parameters, minus ``skip``.

    Used for plain classes and functions registered as plugins: their signature is their
    schema. Parameters without a default are required; unannotated ones accept anything.
    """
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
        hints = typing.get_type_hints(target)
    except (TypeError, ValueError, NameError):
        sig, hints = inspect.signature(obj), {}
    fields = []
    for p in sig.parameters.values():
        if p.name in skip or p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = hints.get(p.name, Any)
        if p.default is inspect.Parameter.empty:
            fields.append((p.name, tp))
        else:
            d = p.default
            fields.append((p.name, tp, dataclasses.field(default_factory=lambda d=d: d)))
    fields.sort(key=lambda f: len(f) == 3)  # dataclasses want required fields first
    return dataclasses.make_dataclass(f"{name}_schema", fields)


def to_dict(instance: Any) -> dict:
    """A schema instance as a plain mapping (shallow: values are kept as they are)."""
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}
