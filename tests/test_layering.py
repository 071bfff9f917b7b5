"""Layering: the core never imports mlcore_builtins; plugins use only the public surface."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT


def test_core_sources_do_not_import_builtins():
    offenders = []
    for path in (ROOT / "mlcore").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "mlcore_builtins"]
    assert offenders == []


def test_importing_every_core_module_loads_no_plugin():
    code = (
        "import importlib, pkgutil, sys, mlcore\n"
        "for m in pkgutil.walk_packages(mlcore.__path__, 'mlcore.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.startswith('mlcore_builtins')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_importing_mlcore_is_light():
    code = "import sys, mlcore; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_plugins_and_the_example_import_nothing_below_mlcore():
    """Built-in plugins and the example use the public surface (``mlcore.X``) only: no
    ``import mlcore.x``, no ``from mlcore.x import ...``, no ``mlcore.x.y`` attribute."""
    import mlcore

    below = {p.stem for p in (ROOT / "mlcore").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    below -= {"__init__", "__main__"} | set(mlcore.__all__)
    offenders = []
    for folder in ("plugins", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names if a.name.startswith("mlcore.")]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] if node.module.startswith("mlcore.") else []
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == "mlcore" and node.attr in below):
                    names = [f"mlcore.{node.attr}"]
                else:
                    continue
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names]
    assert offenders == []


def test_the_light_public_names_stay_light():
    """Plugin schemas and weight layouts may use these at import time: no torch, no numpy."""
    code = ("import sys, mlcore\n"
            "mlcore.WeightLayout, mlcore.label_words, mlcore.FREEZE_POLICIES, mlcore.freeze_backbone, "
            "mlcore.cache_dir, mlcore.atomic_open, mlcore.Plugin, mlcore.MlcoreError\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_no_plugin_object_shares_its_name_with_a_submodule():
    """Importing ``pkg.x`` sets the attribute ``x`` of ``pkg`` to that submodule: a plugin
    object ``pkg:x`` beside a module ``pkg/x.py`` is replaced by the module once the
    plugin has been built, and a second registry would then load the module instead."""
    import importlib.metadata as md

    offenders = []
    for ep in md.distribution("mlcore").entry_points:
        if not ep.group.startswith("mlcore.") or ":" not in ep.value:
            continue
        module, attr = ep.value.split(":")
        folder = ROOT / "plugins" / module.replace(".", "/")
        if (folder / f"{attr}.py").exists() or (folder / attr / "__init__.py").exists():
            offenders.append(ep.value)
    assert offenders == []
