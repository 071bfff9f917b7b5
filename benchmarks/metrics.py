"""mAP and CP/CR/CF1/OP/OR/OF1 at COCO-val2014 size (40,137 × 80) and VG500 size
(21,000 × 500): mlcore's vectorised metrics against a reimplementation of the seed's
numpy code (stack per batch, one argsort loop per label, per-sample loops for the F1
families), measured in the same run. Prints the speed-up and the largest difference.

    python benchmarks/metrics.py [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import mlcore


def seed_voc_ap(rec, prec):
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def seed_map(batches):
    scores = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    aps = []
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c])
        tp = targets[order, c] > 0
        fp = ~tp
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        npos = tp[-1]
        if npos == 0:
            continue
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps.append(seed_voc_ap(rec, prec))
    return float(np.mean(aps))


def seed_prf(batches, k=3, thr=0.5):
    scores = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    n, c = scores.shape
    out = {}
    for mode in ("topk", "threshold"):
        pred = np.zeros_like(scores)
        for i in range(n):  # per sample, as the seed
            if mode == "topk":
                pred[i, np.argsort(-scores[i])[:k]] = 1
            else:
                pred[i] = scores[i] >= thr
        nc, np_, ng = np.zeros(c), np.zeros(c), np.zeros(c)
        for i in range(n):
            nc += pred[i] * targets[i]
            np_ += pred[i]
            ng += targets[i]
        cp = np.mean(np.where(np_ > 0, nc / np.maximum(np_, 1), 0))
        cr = np.mean(np.where(ng > 0, nc / np.maximum(ng, 1), 0))
        op, orr = nc.sum() / max(np_.sum(), 1), nc.sum() / max(ng.sum(), 1)
        out[f"{mode}_cf1"] = 2 * cp * cr / (cp + cr) if cp + cr else 0
        out[f"{mode}_of1"] = 2 * op * orr / (op + orr) if op + orr else 0
    return out


def data(n, c, per_image, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < per_image / c).astype(np.float32)
    scores = (0.3 * targets + 0.7 * rng.random((n, c))).astype(np.float32)  # no clipping: no ties
    return scores, targets


def run(name, n, c, per_image, batch=64):
    scores, targets = data(n, c, per_image)
    batches = [(scores[i:i + batch], targets[i:i + batch]) for i in range(0, n, batch)]
    t0 = time.perf_counter()
    base_map, base_prf = seed_map(batches), seed_prf(batches)
    t_base = time.perf_counter() - t0

    t0 = time.perf_counter()
    m = mlcore.create("metric", "map", num_classes=c)
    f = mlcore.create("metric", "prf", num_classes=c)
    for s, t in batches:
        st, tt = torch.from_numpy(s), torch.from_numpy(t)
        m.update(st, tt)
        f.update(st, tt)
    ours = {**m.compute(), **f.compute()}
    t_ours = time.perf_counter() - t0
    diff = max([abs(ours["mAP"] - base_map)] + [abs(ours[k] - v) for k, v in base_prf.items()])
    print(f"{name:7s} {n:6d}×{c:<4d} seed-style {t_base:7.2f} s   mlcore {t_ours:6.3f} s   "
          f"speed-up {t_base / t_ours:6.1f}×   max |diff| {diff:.1e}")
    return t_base / t_ours, diff


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    a = p.parse_args()
    scale = 10 if a.quick else 1
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run("COCO", 40137 // scale, 80, 2.9)
    run("VG500", 21000 // scale, 500, 9.0)
