"""The core knows no concrete plugin: it never imports mlcore_builtins."""
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
