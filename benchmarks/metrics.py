"""mAP and CP/CR/CF1/OP/OR/OF1 at COCO-val2014 size (40,137 × 80) and VG500 size
(21,000 × 500): mlcore's vectorised metrics against the seed's numpy code as it is
written (``np.vstack`` per batch, one argsort loop per label, per-sample loops for the F1
families), fed the same batches of 64 in the same run. Prints the speed-up and the largest difference.

    python benchmarks/metrics.py [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import mlcore


class SeedMAP:
    """The seed's VOC12mAP, as written there: ``np.vstack`` per batch, one argsort per
    label, Python's ``sum`` over the sorted labels, the VOC AP envelope loop."""

    def __init__(self, c):
        self.pred = np.array([], dtype=np.float32).reshape(0, c)
        self.gt = np.array([], dtype=np.float32).reshape(0, c)

    def update(self, p, y):
        self.pred = np.vstack((self.pred, p))
        self.gt = np.vstack((self.gt, y))

    def compute(self):
        n, c = self.gt.shape
        aps = []
        for j in range(c):
            order = np.argsort(-self.pred[:, j])
            lab = self.gt[order, j]
            tp = (lab == 1).astype(np.int64)
            fp = (lab == 0).astype(np.int64)
            npos = max(sum(tp), np.finfo(np.float64).eps)
            tp, fp = np.cumsum(tp), np.cumsum(fp)
            rec = tp / float(npos)
            prec = tp / np.arange(1, n + 1, dtype=np.float64)
            mrec = np.concatenate(([0.0], rec, [1.0]))
            mpre = np.concatenate(([0.0], prec, [0.0]))
            for i in range(mpre.size - 1, 0, -1):
                mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
            i = np.where(mrec[1:] != mrec[:-1])[0]
            aps.append(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
        return float(np.mean(aps))


class SeedMeter:
    """The seed's Topk/ThresholdAverageMeter: per-sample loops over each batch."""

    def __init__(self, c, topk=None, threshold=None):
        self.right, self.pred, self.gt = np.zeros(c), np.zeros(c), np.zeros(c)
        self.topk, self.threshold = topk, threshold

    def update(self, conf, y):
        order = np.argsort(-conf, axis=-1) if self.topk else None
        for i in range(conf.shape[0]):
            self.gt[y[i] == 1] += 1
            inds = order[i][:self.topk] if self.topk else np.argwhere(conf[i] > self.threshold).squeeze(-1)
            self.pred[inds] += 1
            self.right[inds[y[i][inds] == 1]] += 1

    def compute(self):
        op, orr = self.right.sum() / self.pred.sum(), self.right.sum() / self.gt.sum()
        eps = np.finfo(np.float64).eps
        cp = np.mean(np.maximum(self.right, eps) / np.maximum(self.pred, eps))
        cr = np.mean(np.maximum(self.right, eps) / np.maximum(self.gt, eps))
        return {"cf1": 2 * cp * cr / (cp + cr), "of1": 2 * op * orr / (op + orr)}


def data(n, c, per_image, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < per_image / c).astype(np.float32)
    scores = (0.3 * targets + 0.7 * rng.random((n, c))).astype(np.float32)  # no clipping: no ties
    return scores, targets


def run(name, n, c, per_image, batch=64):
    scores, targets = data(n, c, per_image)
    batches = [(scores[i:i + batch], targets[i:i + batch]) for i in range(0, n, batch)]
    t0 = time.perf_counter()
    smap, stop, sthr = SeedMAP(c), SeedMeter(c, topk=3), SeedMeter(c, threshold=0.5)
    for s, t in batches:
        for meter in (smap, stop, sthr):
            meter.update(s, t)
    base_map = smap.compute()
    base_prf = {f"topk_{k}": v for k, v in stop.compute().items()}
    base_prf.update({f"threshold_{k}": v for k, v in sthr.compute().items()})
    t_base = time.perf_counter() - t0

    warm = [mlcore.create("metric", k, num_classes=c) for k in ("map", "prf")]  # imports, first calls
    for w in warm:
        w.update(torch.from_numpy(scores[:64]), torch.from_numpy(targets[:64]))
        w.compute()
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
