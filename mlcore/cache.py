"""The cache folder for derived files (generated data, label indices, embeddings).

``$MLCORE_CACHE`` when set, else ``~/.cache/mlcore``. Never inside a dataset root, which
may be read-only.
"""
from __future__ import annotations

import os


def cache_dir() -> str:
    path = os.environ.get("MLCORE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mlcore")
    os.makedirs(path, exist_ok=True)
    return path
