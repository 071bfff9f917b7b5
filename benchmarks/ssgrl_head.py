"""SSGRL's head (semantic decoupling + GGNN + output), forward and backward, batch 8 on a
9×9 map of 2048 channels: mlcore's computation against the official one (written as the
official code is, in tests/ssgrl_reference.py) on the same weights, at 80 labels (COCO)
and 500 (VG500). Each run is a fresh process, so its peak memory growth is its own.

    python benchmarks/ssgrl_head.py [--labels 80 500]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build(labels: int):
    import numpy as np
    import torch
    from torch import nn

    from mlcore import LabelInfo
    from mlcore_builtins.ssgrl.model import SSGRL, adjacency

    class Features(nn.Module):  # stands in for ResNet-101's layer4 output
        out_dim = 2048

        def last_stage(self):
            return self

        def forward(self, x):
            return x

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = (rng.random((2000, labels)) < 3 / labels).astype(np.int64)
    words = torch.from_numpy(rng.normal(size=(labels, 300)).astype(np.float32))
    info = LabelInfo.from_targets([f"c{i}" for i in range(labels)], t)
    model = SSGRL(Features(), words, adjacency(info), feature_pool=1, reset_gate="official")
    fmap = torch.randn(8, 2048, 9, 9, requires_grad=True)
    return model, fmap


def child(impl: str, labels: int) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model, fmap = build(labels)
    if impl == "official":
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from ssgrl_reference import official_head

        run = lambda: official_head(model, fmap)  # noqa: E731
    else:
        run = lambda: model(fmap)  # noqa: E731
    before = rss_mb()
    t0 = time.perf_counter()
    out = run()
    out.square().sum().backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"out": out.detach(), "fmap_grad": fmap.grad, "fc_1": grads["word_semantic.fc_1.weight"]},
               f"/tmp/ssgrl_head_{impl}_{labels}.pt")
    print(json.dumps({"seconds": seconds, "peak_growth_mb": peak - before}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, nargs="+", default=[80, 500])
    args = ap.parse_args()
    import torch

    for labels in args.labels:
        res = {}
        for impl in ("official", "mlcore"):
            proc = subprocess.run([sys.executable, HERE, "--child", impl, str(labels)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            res[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        a = torch.load(f"/tmp/ssgrl_head_official_{labels}.pt")
        b = torch.load(f"/tmp/ssgrl_head_mlcore_{labels}.pt")
        rel = max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)
        o, m = res["official"], res["mlcore"]
        print(f"{labels:4d} labels: official {o['seconds']:6.1f} s, +{o['peak_growth_mb']:7.0f} MB | "
              f"mlcore {m['seconds']:5.1f} s, +{m['peak_growth_mb']:6.0f} MB | "
              f"{o['seconds'] / m['seconds']:4.1f}× faster, {o['peak_growth_mb'] / m['peak_growth_mb']:4.1f}× less "
              f"memory | max relative difference (logits, gradients) {rel:.1e}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
