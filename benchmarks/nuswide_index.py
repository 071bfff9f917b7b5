"""Building the NUS-WIDE label index from label files of the real size (81 concepts ×
161,789 train + 107,859 test lines, ``0 \\r\\n`` lines as in the release) with the
plugin's numpy reader, against a per-line Python reader (``for line in f: int(line)``,
one column at a time). The cache is bypassed: this times the parse, not the npz load.

    python benchmarks/nuswide_index.py [--scale 0.1] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

import numpy as np

TRAIN, TEST, CONCEPTS = 161_789, 107_859, 81


def write_release(root: str, scale: float, rng: random.Random) -> dict[str, int]:
    """Concept list, image lists and label files (about 2% positives, as NUS-WIDE's rarer
    concepts; the parse does not depend on it)."""
    sizes = {"train": int(TRAIN * scale), "test": int(TEST * scale)}
    for d in ("ConceptsList", "ImageList", "Groundtruth/TrainTestLabels"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    names = [f"concept{j:02d}" for j in range(CONCEPTS)]
    with open(os.path.join(root, "ConceptsList", "Concepts81.txt"), "w", newline="") as f:
        f.write("".join(n + "\r\n" for n in names))
    for split, word in (("train", "Train"), ("test", "Test")):
        n = sizes[split]
        with open(os.path.join(root, "ImageList", f"{word}Imagelist.txt"), "w", newline="") as f:
            f.write("".join(f"tag{i % 700:03d}\\{i:06d}_{rng.randrange(10**9)}.jpg\r\n" for i in range(n)))
        for name in names:
            bits = np.random.default_rng(rng.randrange(2**32)).random(n) < 0.02
            lines = np.where(bits, b"1 \r\n", b"0 \r\n")
            with open(os.path.join(root, "Groundtruth/TrainTestLabels", f"Labels_{name}_{word}.txt"), "wb") as f:
                f.write(b"".join(lines.tolist()))
    return sizes


def per_line_index(root: str) -> dict[str, np.ndarray]:
    """The baseline: the image lists and every label file read line by line in Python."""
    from mlcore_builtins.nuswide.reader import SPLITS, concepts_path, label_path, list_path, read_concepts

    classes = read_concepts(concepts_path(root))
    out = {}
    for split in SPLITS:
        with open(list_path(root, split), encoding="utf-8") as f:
            images = ["Flickr/" + line.strip().replace("\\", "/") for line in f if line.strip()]
        targets = np.empty((len(images), len(classes)), dtype=np.uint8)
        for j, c in enumerate(classes):
            with open(label_path(root, c, split)) as f:
                column = [int(line) for line in f]
            targets[:, j] = column
        out[split] = targets
    return out


def numpy_index(root: str) -> dict[str, np.ndarray]:
    from mlcore_builtins.nuswide.reader import (SPLITS, build_index, concepts_path, list_path, read_concepts,
                                                read_image_list)

    images = {s: read_image_list(list_path(root, s)) for s in SPLITS}
    index = build_index(root, read_concepts(concepts_path(root)), images)
    return {s: index.splits[s].targets for s in SPLITS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the real line counts")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nuswide-bench-")
    try:
        sizes = write_release(root, args.scale, random.Random(0))
        print(f"{CONCEPTS} concepts, {sizes['train']:,} train + {sizes['test']:,} test lines per concept")
        ref = per_line_index(root)
        got = numpy_index(root)
        assert all(np.array_equal(ref[s], got[s]) for s in ref), "the readers disagree"
        times: dict[str, list[float]] = {"per-line": [], "numpy": []}
        for _ in range(args.runs):
            for name, fn in (("per-line", per_line_index), ("numpy", numpy_index)):
                t = time.perf_counter()
                fn(root)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            print(f"{name:9s} min {min(ts):.2f} s  max {max(ts):.2f} s  ({args.runs} runs)")
        ratios = [b / a for a, b in zip(times["numpy"], times["per-line"])]
        print(f"speed-up {min(times['per-line']) / min(times['numpy']):.1f}× (best vs best); "
              f"per run {min(ratios):.1f}–{max(ratios):.1f}×")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
