"""Property-based tests of the config surface: whatever a config or a ``--set`` holds —
wrong types, NaN/inf, huge and negative numbers, empty and non-ASCII strings, lists
where mappings belong, unknown keys at any level, YAML anchors and aliases — loading it
either succeeds or ends in a ConfigError that names the key; ``mlcore check`` exits 0 or
2 without a traceback. Never any other exception.

The budget is small and the examples derandomized in ``make test`` (profile ``ci``);
``make fuzz`` runs the profile ``fuzz`` (many more examples, random each run).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlcore
from conftest import tiny_config
from mlcore.cli.main import main

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BASE = tiny_config(os.path.join(tempfile.gettempdir(), "mlcore-fuzz-run"))
BASE["scheduler"] = {"name": "cosine", "warmup_epochs": 1}
BASE["early_stop"] = {"patience": 3}


def _paths(node, prefix=()):
    """Every key path of a nested mapping (the leaves and the mappings themselves)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    return out


PATHS = _paths(mlcore.load_config(BASE).resolved())


def _node(data, path):
    for k in path:
        data = data[k]
    return data


MAPPINGS = [()] + [p for p in PATHS if isinstance(_node(mlcore.load_config(BASE).resolved(), p), dict)]

text = st.text(max_size=12)  # empty, non-ASCII, control characters…
#: the families of the hardening catalogue, drawn often; the rest is anything at all
specials = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -1, 0, -0.5, 10**30, -(10**30), "", " ",
                            "é", "☃", "nan", ".inf", "5e-4", [], {}, [1, 2], {"a": 1}, None, True])
values = specials | st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)


def _set(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {} if not isinstance(node.get(k), str) else {"name": node[k]}
        node = node[k]
    node[path[-1]] = value
    return data


def _loads_or_names(cfg, named: str, overrides=()) -> None:
    """Loading ``cfg`` succeeds with finite numbers only, or raises a ConfigError whose
    text names ``named``."""
    try:
        exp = mlcore.build(cfg, overrides)
    except mlcore.ConfigError as exc:
        assert named in str(exc), (named, str(exc))
    else:
        assert all(math.isfinite(x) for x in _floats(exp.config.resolved()))


def _floats(node):
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _floats(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _floats(v)


@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere_is_accepted_or_a_config_error_naming_its_section(path, value):
    _loads_or_names(_set(BASE, path, value), str(path[0]))


@given(where=st.sampled_from(MAPPINGS), key=text.filter(lambda k: k.strip() != ""), value=values)
def test_an_unknown_key_at_any_level_is_named(where, key, value):
    resolved = mlcore.load_config(BASE).resolved()
    if key in _node(resolved, where):
        return  # not unknown
    _loads_or_names(_set(BASE, where + (key,), value), key if where == () else str(where[0]))


@given(path=st.sampled_from(PATHS), value=values)
def test_any_set_value_is_accepted_or_a_config_error(path, value):
    item = ".".join(map(str, path)) + "=" + yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    if item.endswith("\n..."):
        item = item[:-4]
    _loads_or_names(BASE, str(path[0]), [item])


@given(src=st.sampled_from(["data", "train", "model", "dataset", "optimizer", "scheduler", "early_stop"]),
       dst=st.sampled_from(["data", "train", "model", "dataset", "optimizer", "scheduler", "loss", "metrics",
                            "early_stop"]),
       merge=st.booleans())
def test_yaml_anchors_and_aliases_are_plain_data(src, dst, merge):
    """``dst: *src`` (or ``dst: {<<: *src}``) copies a section where it may not belong."""
    body = {k: v for k, v in BASE.items() if k not in (src, dst)}
    text_ = yaml.safe_dump(body, sort_keys=False)
    anchored = yaml.safe_dump({src: BASE[src]}, default_flow_style=True, width=10**6).strip()[1:-1]
    name, _, rest = anchored.partition(": ")
    alias = f"{{<<: *a}}" if merge and isinstance(BASE[src], dict) else "*a"
    doc = f"{name}: &a {rest}\n{dst}: {alias}\n{text_}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc)
        _loads_or_names(path, dst)
        _check_exits_cleanly(path)


def _check_exits_cleanly(path, *overrides) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["check", str(path), *(["--set", *overrides] if overrides else [])])
    assert rc in (0, 2) and "Traceback" not in err.getvalue(), err.getvalue()
    return rc, err.getvalue()


@given(path=st.sampled_from(PATHS), value=values)
def test_mlcore_check_exits_0_or_2_and_names_the_key(path, value):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "c.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            yaml.safe_dump(_set(BASE, path, value), f, allow_unicode=True)
        rc, err = _check_exits_cleanly(cfg)
        if rc == 2:
            assert str(path[0]) in err, err
