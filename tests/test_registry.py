"""Plugin discovery: metadata-only finding, lazy loading, broken and duplicate plugins."""
from __future__ import annotations

import importlib.metadata as md
import sys

import pytest

from conftest import make_dist
from mlcore.errors import PluginError
from mlcore.plugin import Plugin
from mlcore.registry import Registry, parse_disabled

GOOD = """
    from dataclasses import dataclass
    from mlcore.plugin import Plugin

    LOADED = True

    @dataclass
    class Cfg:
        scale: float = 1.0

    def build(cfg):
        return ("good", cfg.scale)

    plugin = Plugin("loss", "good", "a good loss", Cfg, build)

    def plain(num_classes: int, width: int = 4):
        \"\"\"A plain function model.\"\"\"
        return ("plain", num_classes, width)
"""


def registry_from(tmp_path, monkeypatch, dists: dict, disabled: str = "") -> Registry:
    """A Registry over fake distributions under tmp_path (and nothing installed)."""
    for name, (eps, modules) in dists.items():
        make_dist(tmp_path / name, name, eps, modules)
        monkeypatch.syspath_prepend(str(tmp_path / name))
    eps = [ep for name in dists for d in md.distributions(path=[str(tmp_path / name)]) for ep in d.entry_points]
    return Registry(entry_points=eps, disabled=disabled)


def test_finding_imports_nothing_and_loading_is_lazy(tmp_path, monkeypatch):
    reg = registry_from(tmp_path, monkeypatch, {
        "pkg-good": ({"mlcore.losses": {"good": "fake_good_mod:plugin"}}, {"fake_good_mod": GOOD})})
    rows = reg.records()
    assert [(r.kind, r.name, r.distribution, r.version, r.status) for r in rows] == \
        [("loss", "good", "pkg-good", "1.0", "ok")]
    assert "fake_good_mod" not in sys.modules
    plugin = reg.get("loss", "good")
    assert "fake_good_mod" in sys.modules
    assert plugin.summary == "a good loss"
    assert reg.get("loss", "good") is plugin  # cached


def test_broken_plugin_is_isolated_and_names_its_distribution(tmp_path, monkeypatch):
    reg = registry_from(tmp_path, monkeypatch, {
        "pkg-good": ({"mlcore.losses": {"good": "fake_good2:plugin"}}, {"fake_good2": GOOD}),
        "pkg-bad": ({"mlcore.losses": {"bad": "fake_bad_mod:plugin"}},
                    {"fake_bad_mod": "raise ImportError('needs libfoo 9')\n"}),
    })
    with pytest.raises(PluginError) as err:
        reg.get("loss", "bad")
    msg = str(err.value)
    assert "pkg-bad" in msg and "libfoo 9" in msg and "'bad'" in msg
    assert isinstance(err.value.__cause__, ImportError)  # the original error is chained
    assert reg.get("loss", "good").build(reg.get("loss", "good").schema()) == ("good", 1.0)
    statuses = {r.name: r.status for r in reg.check_all()}
    assert statuses == {"good": "ok", "bad": "broken"}


def test_same_name_from_two_distributions_is_an_error_naming_both(tmp_path, monkeypatch):
    reg = registry_from(tmp_path, monkeypatch, {
        "pkg-one": ({"mlcore.losses": {"good": "fake_one:plugin"}}, {"fake_one": GOOD}),
        "pkg-two": ({"mlcore.losses": {"good": "fake_two:plugin"}}, {"fake_two": GOOD}),
    })
    (row,) = reg.records("loss")
    assert row.status == "duplicate"
    with pytest.raises(PluginError, match="pkg-one.*pkg-two|pkg-two.*pkg-one"):
        reg.get("loss", "good")
    assert "fake_one" not in sys.modules and "fake_two" not in sys.modules


def test_disabled_plugins_and_unknown_names(tmp_path, monkeypatch):
    reg = registry_from(tmp_path, monkeypatch, {
        "pkg-good": ({"mlcore.losses": {"good": "fake_good3:plugin"},
                      "mlcore.models": {"plain": "fake_good3:plain"}}, {"fake_good3": GOOD})},
        disabled="loss:good")
    with pytest.raises(PluginError, match="switched off by MLCORE_DISABLE_PLUGINS"):
        reg.get("loss", "good")
    with pytest.raises(PluginError, match=r"unknown model 'plian' \(did you mean 'plain'\?\)"):
        reg.get("model", "plian")
    with pytest.raises(PluginError, match="Unknown value 'modle' for argument kind"):
        reg.get("modle", "plain")


def test_parse_disabled():
    assert parse_disabled(" model:a, hook:progress ,") == {("model", "a"), ("hook", "progress")}
    with pytest.raises(PluginError, match="MLCORE_DISABLE_PLUGINS"):
        parse_disabled("progress")


def test_plain_callable_signature_is_the_schema(tmp_path, monkeypatch):
    reg = registry_from(tmp_path, monkeypatch, {
        "pkg-good": ({"mlcore.models": {"plain": "fake_good4:plain"}}, {"fake_good4": GOOD})})
    plugin = reg.get("model", "plain")
    assert plugin.summary == "A plain function model."
    fields = {f.name for f in __import__("dataclasses").fields(plugin.schema)}
    assert fields == {"width"}  # num_classes is context, not config
    assert plugin.instantiate(plugin.schema(width=7), num_classes=3, info=None) == ("plain", 3, 7)


def test_register_in_process_and_namespaces():
    reg = Registry(entry_points=[])
    reg.register("loss", "mine", lambda scale=2.0: ("mine", scale))
    assert reg.get("loss", "mine").instantiate(reg.get("loss", "mine").schema()) == ("mine", 2.0)
    from dataclasses import make_dataclass

    ns = Plugin("backbone", "zoo", "many", make_dataclass("C", []), lambda cfg, variant=None: variant,
                namespace=True)
    reg.register("backbone", "zoo", ns)
    assert reg.get("backbone", "zoo/abc").instantiate(ns.schema(), variant="abc") == "abc"
    reg.register("loss", "plain", lambda: 1)
    with pytest.raises(PluginError, match="not a namespace"):
        reg.get("loss", "plain/x")


def test_installed_builtins_are_found_through_entry_points():
    import mlcore

    names = {(r.kind, r.name): r.distribution for r in mlcore.list_plugins()}
    for key in [("dataset", "shapes"), ("model", "resnet18"), ("model", "resnet101"), ("backbone", "timm"),
                ("loss", "bce"), ("metric", "map"), ("metric", "prf"), ("hook", "early_stop")]:
        assert names[key] == "mlcore"
    assert [r.name for r in mlcore.list_plugins("model", "resnet1*")] == ["resnet18", "resnet101", "resnet152"]
