"""Training-step throughput (images/s) of ResNet-101 and SSGRL at 448 and 576 px: mlcore's
step against a baseline written like the seed's loop (float32, NCHW, images normalized
before the step, no compile), same model, batch and optimizer, measured in the same run.

mlcore's step takes uint8 images and normalizes them on the device, with channels-last
memory (``train.channels_last``, which oneDNN's CPU convolutions like too); on CUDA it
runs under bf16 autocast (``--compile`` adds torch.compile), and the report gives the
fraction of the chip's bf16 peak reached (``--peak-tflops``, default 989 for an
H100/H200 SXM). On the CPU both compute in float32: mlcore must not be slower.

    python benchmarks/train_step.py [--quick] [--compile] [--batch N]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import mlcore
from mlcore.engine.device import Normalizer, autocast
from mlcore.labels import LabelInfo

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_model(name: str, num_classes: int, tmp: str) -> torch.nn.Module:
    if name == "resnet101":
        return mlcore.create("model", "resnet101", num_classes=num_classes)
    rng = np.random.default_rng(0)
    emb = os.path.join(tmp, "emb.npy")
    np.save(emb, rng.normal(size=(num_classes, 300)).astype(np.float32))
    targets = (rng.random((1000, num_classes)) < 0.04).astype(np.uint8)
    info = LabelInfo.from_targets([f"c{i}" for i in range(num_classes)], targets)
    return mlcore.create("model", "ssgrl", num_classes=num_classes, info=info, embeddings=emb, freeze="none")


def flops_per_step(model, x, y) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def timed(step, n: int, device) -> float:
    step()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def run(name: str, size: int, args, device, tmp: str) -> None:
    torch.manual_seed(0)
    b = args.batch
    images = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8)
    y = (torch.rand(b, 80) < 0.05).float().to(device)
    norm = Normalizer(MEAN, STD)

    base = build_model(name, 80, tmp).to(device).train()
    opt_b = torch.optim.Adam([p for p in base.parameters() if p.requires_grad], lr=1e-5)
    xb = norm(images).to(device)  # the seed normalized in its workers: float32 on the host

    def base_step():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(base(xb), y)
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    ours = build_model(name, 80, tmp).to(device).train()
    amp = "bf16" if device.type == "cuda" else "off"
    ours = ours.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    forward = torch.compile(ours) if args.compile else ours
    opt_o = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=1e-5)
    fmt = torch.channels_last
    xu = images.to(device)

    def our_step():
        x = norm(xu).contiguous(memory_format=fmt)
        with autocast(amp, device):
            logits = forward(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        opt_o.zero_grad(set_to_none=True)
        loss.backward()
        opt_o.step()

    # alternate the two, best of three rounds each, so drift in the machine hits both
    t_base, t_ours = float("inf"), float("inf")
    for _ in range(3):
        t_base = min(t_base, timed(base_step, args.steps, device))
        t_ours = min(t_ours, timed(our_step, args.steps, device))
    flops = flops_per_step(base, xb, y)
    line = (f"{name:9s} {size} px, batch {b}: baseline {b / t_base:7.1f} img/s | mlcore {b / t_ours:7.1f} img/s "
            f"= {t_base / t_ours:4.2f}× | {flops / t_ours / 1e12:6.2f} TFLOP/s")
    if device.type == "cuda":
        line += f" ({100 * flops / t_ours / 1e12 / args.peak_tflops:4.1f}% of bf16 peak)"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="448 px only, ResNet-101 only")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (32 if device.type == "cuda" else 2)
    args.steps = args.steps or (10 if device.type == "cuda" else 2)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet101",) if args.quick else ("resnet101", "ssgrl"):
            for size in (448,) if args.quick else (448, 576):
                run(name, size, args, device, tmp)


if __name__ == "__main__":
    main()
