"""Label vectors for ``shapes``, built the way GloVe vectors of multi-word labels are:
each word (``red``, ``blue``, ``circle``, …) gets a fixed random vector and a class is the
mean of its words' vectors — so ``red_circle`` and ``red_square`` share half their
meaning. No GloVe file ships with mlcore; the SSGRL demo uses these.

    python -m mlcore_builtins.shapes.vectors OUT.npy [--dim 32]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from .generate import CLASSES


def shapes_label_vectors(dim: int = 32, seed: int = 0) -> np.ndarray:
    words = sorted({w for c in CLASSES for w in c.split("_")})
    rng = np.random.default_rng(seed)
    table = {w: rng.normal(size=dim).astype(np.float32) for w in words}
    return np.stack([np.mean([table[w] for w in c.split("_")], axis=0) for c in CLASSES]).astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--dim", type=int, default=32)
    a = p.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    np.save(a.out, shapes_label_vectors(a.dim))
    print(f"wrote {a.out}: {len(CLASSES)}×{a.dim} label vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
