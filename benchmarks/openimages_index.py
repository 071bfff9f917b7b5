"""Indexing an OpenImages-size labels file: mlcore's streaming numpy reader against the
usual ``csv.reader`` into a dict of label lists (what the seed's preparation scripts do).

Writes a synthetic V6-format train file (9M images, 28M rows, 9,605 trainable of 19,957
described classes at ``--scale 1``; sorted by ImageID as the release is) into a temporary
folder, then runs each reader ``--runs`` times in a fresh subprocess and reports the time
and the peak RSS (``VmHWM``) of each, the load time of the cached (memory-mapped) index,
``label_info()``, and the memory of evaluating AP over known entries on a validation-size
41,620 × 9,605 score matrix: mlcore's ``map`` metric vs the sparse ``average_precision_known``.

    python benchmarks/openimages_index.py --scale 0.1 --runs 3
    python benchmarks/openimages_index.py --scale 1 --runs 1 --eval
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_TRAINABLE, NUM_DESCRIBED = 9605, 19957
IMAGES, ROWS = 9_000_000, 28_000_000
VAL_IMAGES, VAL_KNOWN_PER_IMAGE = 41_620, 13


def label_names(k: int) -> list[str]:
    """Freebase-like mids of varied length: /m/0 + base-36 digits."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for i in range(k):
        s, v = "", i * 7919 + 1000
        while v:
            v, r = divmod(v, 36)
            s += digits[r]
        out.append("/m/0" + s)
    return out


def hex16(values: np.ndarray) -> np.ndarray:
    """uint64 → (n, 16) ASCII hex digits, vectorized."""
    table = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    b = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(values), 16), dtype=np.uint8)
    out[:, 0::2] = table[b >> 4]
    out[:, 1::2] = table[b & 15]
    return out


def scatter_field(buf: np.ndarray, pos: np.ndarray, mat: np.ndarray, length: np.ndarray) -> None:
    cols = np.arange(mat.shape[1])
    mask = cols[None, :] < length[:, None]
    buf[(pos[:, None] + cols)[mask]] = mat[mask]


def generate(folder: str, scale: float, seed: int = 0) -> dict:
    """The three V6-format files of a synthetic train split; returns the file paths."""
    rng = np.random.default_rng(seed)
    names = label_names(NUM_DESCRIBED)
    trainable = [names[i] for i in rng.permutation(NUM_DESCRIBED)[:NUM_TRAINABLE]]
    desc = os.path.join(folder, "oidv6-class-descriptions.csv")
    with open(desc, "w") as f:
        f.write("LabelName,DisplayName\n")
        for i, n in enumerate(names):
            f.write(f'{n},"Thing {i}, kind {i % 7}"\n' if i % 5 == 0 else f"{n},Thing {i}\n")
    train_list = os.path.join(folder, "oidv6-classes-trainable.txt")
    with open(train_list, "w") as f:
        f.write("\n".join(trainable) + "\n")
    n_img, n_rows = int(IMAGES * scale), int(ROWS * scale)
    ids = np.unique(rng.integers(0, 2**63, size=int(n_img * 1.01), dtype=np.uint64))[:n_img]
    ids_hex = hex16(ids)
    label_mat = np.zeros((NUM_DESCRIBED, max(map(len, names))), dtype=np.uint8)
    label_len = np.array([len(n) for n in names])
    for i, n in enumerate(names):
        label_mat[i, :len(n)] = np.frombuffer(n.encode(), dtype=np.uint8)
    sources = [b"verification", b"crowdsource-verification"]
    src_mat = np.zeros((2, 24), dtype=np.uint8)
    for i, s in enumerate(sources):
        src_mat[i, :len(s)] = np.frombuffer(s, dtype=np.uint8)
    src_len = np.array([len(s) for s in sources])
    trainable_idx = np.array([names.index(t) for t in trainable]) if scale else np.zeros(0, int)
    labels_path = os.path.join(folder, "oidv6-train-annotations-human-imagelabels.csv")
    image_of_row = np.sort(rng.integers(0, n_img, size=n_rows))
    with open(labels_path, "wb") as f:
        f.write(b"ImageID,Source,LabelName,Confidence\n")
        step = 1 << 20
        for a in range(0, n_rows, step):
            b = min(n_rows, a + step)
            m = b - a
            img = image_of_row[a:b]
            # 95% of the rows are of trainable classes (Zipf-like), the rest of other described ones
            zipf = np.minimum(rng.zipf(1.3, size=m) - 1, NUM_TRAINABLE - 1)
            lab = np.where(rng.random(m) < 0.95, trainable_idx[zipf], rng.integers(0, NUM_DESCRIBED, size=m))
            src = (rng.random(m) < 0.3).astype(np.int64)
            conf = (rng.random(m) < 0.6).astype(np.uint8) + 48
            length = 16 + 1 + src_len[src] + 1 + label_len[lab] + 1 + 1 + 1
            start = np.zeros(m, dtype=np.int64)
            np.cumsum(length[:-1], out=start[1:])
            buf = np.full(int(length.sum()), 44, dtype=np.uint8)  # commas everywhere, fields written over
            scatter_field(buf, start, ids_hex[img], np.full(m, 16))
            scatter_field(buf, start + 17, src_mat[src], src_len[src])
            p = start + 18 + src_len[src]
            scatter_field(buf, p, label_mat[lab], label_len[lab])
            p = p + label_len[lab] + 1
            buf[p] = conf
            buf[p + 1] = 10
            f.write(buf.tobytes())
    return {"descriptions": desc, "trainable": train_list, "labels": labels_path}


# -- the measured programs (each in its own process) -----------------------------------------------
BASELINE = r"""
import csv, json, sys, time
desc, trainable, labels = sys.argv[1:4]
t0 = time.perf_counter()
with open(trainable) as f:
    class_of = {line.strip(): j for j, line in enumerate(f) if line.strip()}
with open(desc, newline="") as f:
    described = {row[0] for row in csv.reader(f)}
image_labels = {}
with open(labels, newline="") as f:
    rows = csv.reader(f)
    next(rows)
    for image_id, source, label, confidence in rows:
        if label not in described:
            raise SystemExit(f"unknown label {label}")
        j = class_of.get(label)
        known = image_labels.setdefault(image_id, [])  # an image with any row is in the split
        if j is not None:
            known.append((j, confidence == "1"))
t = time.perf_counter() - t0
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
entries = positives = 0
for v in image_labels.values():  # (image, class) listed twice: one entry, positive if any row is
    entries += len({j for j, _ in v})
    positives += len({j for j, p in v if p})
print(json.dumps({"seconds": t, "peak_mb": hwm / 1024, "images": len(image_labels), "entries": entries,
                  "positives": positives}))
"""

OURS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
from mlcore_builtins.openimages import reader
desc, trainable, labels = sys.argv[1:4]
t0 = time.perf_counter()
index = reader.build_index(desc, trainable, labels)
t = time.perf_counter() - t0
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
folder = sys.argv[5]
if folder:
    reader.save(index, folder)
print(json.dumps({"seconds": t, "peak_mb": hwm / 1024, "images": index.num_images,
                  "entries": int(len(index.labels)), "positives": int(index.positive.sum())}))
"""

LOAD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from mlcore_builtins.openimages import reader
from mlcore_builtins.openimages.dataset import dense_rows
t0 = time.perf_counter()  # the load itself (imports excluded: torch's alone is seconds here)
index = reader.load(sys.argv[1])
row = dense_rows(index, [index.num_images // 2])
t = time.perf_counter() - t0
t1 = time.perf_counter()
from mlcore_builtins.openimages.dataset import OpenImagesDataset
ds = OpenImagesDataset(index, "/nonexistent", "train")
info = ds.label_info()
t_info = time.perf_counter() - t1
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"load_seconds": t, "label_info_seconds": t_info, "label_info_peak_mb": hwm / 1024,
                  "num_unknown": ds.num_unknown}))
"""

EVAL = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[2])
def rss():
    return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")][0] / 1024
def hwm():
    return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
n, c, k = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
scores = torch.from_numpy(rng.random((n, c), dtype=np.float32))
img = np.repeat(np.arange(n), k)
cls = np.minimum(rng.zipf(1.3, size=n * k) - 1, c - 1)
key = np.unique(img.astype(np.int64) * c + cls)
img, cls = key // c, key % c
pos = rng.random(len(key)) < 0.5
which = sys.argv[1]
if which == "map":
    import mlcore
    # as the engine's evaluation hands them over: 1, 0, -1 as int8 (densified one sample at a time)
    targets = torch.full((n, c), -1, dtype=torch.int8)
    targets[torch.from_numpy(img), torch.from_numpy(cls)] = torch.from_numpy(pos.astype(np.int8))
    metric = mlcore.create("metric", "map", num_classes=c)
    before = rss()
    t0 = time.perf_counter()
    metric.update(scores, targets)
    m = metric.compute()["mAP"]
else:
    from mlcore_builtins.openimages.evaluation import average_precision_known
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(img, minlength=n), out=offsets[1:])
    before = rss()
    t0 = time.perf_counter()
    ap = average_precision_known(scores, offsets, cls.astype(np.int16), pos, c)
    m = float(np.nanmean(ap))
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "extra_mb": hwm() - before, "inputs_mb": before, "mAP": m}))
"""


def run(code: str, *args: str, check: bool = True) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        if not check:  # e.g. killed by the kernel's OOM killer (-9)
            return {"failed": proc.returncode, "stderr": proc.stderr[-500:]}
        raise SystemExit(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(xs: list[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(min(xs)) if len(xs) == 1 else f"{fmt.format(min(xs))}–{fmt.format(max(xs))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of V6's 9M images / 28M rows")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--eval", action="store_true", help="also measure evaluation memory (validation size)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--eval-images", type=int, default=VAL_IMAGES,
                    help="validation images (V6: 41,620; the map metric needs > 20 GB there)")
    ap.add_argument("--keep", help="generate into (and keep) this folder")
    args = ap.parse_args()
    plugins = os.path.join(HERE, "..", "plugins")
    if not args.eval_only:
        folder = args.keep or tempfile.mkdtemp(prefix="openimages-bench-")
        os.makedirs(folder, exist_ok=True)
        try:
            t0 = time.perf_counter()
            files = generate(folder, args.scale)
            size = os.path.getsize(files["labels"])
            print(f"synthetic train labels: scale {args.scale}, {size / 2**20:.0f} MiB, "
                  f"generated in {time.perf_counter() - t0:.1f}s")
            srcs = [files["descriptions"], files["trainable"], files["labels"]]
            base, ours = [], []
            cache = os.path.join(folder, "index")
            for r in range(args.runs):
                base.append(run(BASELINE, *srcs))
                ours.append(run(OURS, *srcs, plugins, cache if r == 0 else ""))
                print(f"  run {r + 1}: csv.reader {base[-1]['seconds']:.1f}s {base[-1]['peak_mb']:.0f} MB | "
                      f"mlcore {ours[-1]['seconds']:.1f}s {ours[-1]['peak_mb']:.0f} MB")
            for k in ("images", "entries", "positives"):  # the same labels, counted both ways
                assert base[0][k] == ours[0][k], (k, base[0], ours[0])
            speed = [b["seconds"] / o["seconds"] for b, o in zip(base, ours)]
            mem = [o["peak_mb"] / b["peak_mb"] for b, o in zip(base, ours)]
            loads = [run(LOAD, cache, plugins) for _ in range(args.runs)]
            print(f"images {ours[0]['images']}, known entries {ours[0]['entries']}")
            print(f"csv.reader + dict: {spread([b['seconds'] for b in base], '{:.1f}')} s, "
                  f"peak {spread([b['peak_mb'] for b in base], '{:.0f}')} MB")
            print(f"mlcore reader:     {spread([o['seconds'] for o in ours], '{:.1f}')} s, "
                  f"peak {spread([o['peak_mb'] for o in ours], '{:.0f}')} MB")
            print(f"speed ratio {spread(speed, '{:.1f}')}× (target ≥ 10×), "
                  f"peak memory ratio {spread(mem, '{:.3f}')} (target ≤ 0.25)")
            print(f"cached index load (memory-mapped, + one densified row): "
                  f"{spread([x['load_seconds'] for x in loads], '{:.3f}')} s (target ≤ 1 s)")
            print(f"label_info(): {spread([x['label_info_seconds'] for x in loads], '{:.1f}')} s, "
                  f"process peak {spread([x['label_info_peak_mb'] for x in loads], '{:.0f}')} MB")
        finally:
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    if args.eval or args.eval_only:
        c = NUM_TRAINABLE
        for which in ("sparse", "map"):
            r = run(EVAL, which, plugins, args.eval_images, c, VAL_KNOWN_PER_IMAGE, check=False)
            name = "average_precision_known" if which == "sparse" else "mlcore 'map' metric"
            if "failed" in r:
                print(f"evaluation {args.eval_images}×{c} ({name}): the process failed with status {r['failed']} "
                      f"(-9: killed, out of memory) {r['stderr']}")
                continue
            print(f"evaluation {args.eval_images}×{c} ({name}): {r['seconds']:.1f}s, {r['extra_mb']:.0f} MB over "
                  f"the {r['inputs_mb']:.0f} MB holding the inputs (mAP {r['mAP']:.4f})")


if __name__ == "__main__":
    main()
