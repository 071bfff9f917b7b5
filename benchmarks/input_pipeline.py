"""Training input pipeline, images/s on one core: mlcore's uint8 path (torchvision decode,
one fused crop-resize, flip, normalization) against the seed's PIL chain (Resize 640 →
RandomChoice crop → Resize 576 → RandomHorizontalFlip → ToTensor → Normalize), same output
size, measured in the same run on photo-like JPEGs of VOC size (500×375) and COCO size
(640×480).

    python benchmarks/input_pipeline.py [--images N]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from mlcore.data import TrainTransform, read_image
from mlcore.engine.device import Normalizer

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def photo_like(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Smooth colour fields, edges and fine texture: JPEGs of a photo's size and cost."""
    low = rng.random((h // 16 + 2, w // 16 + 2, 3)) * 255
    img = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(6):  # a few hard-edged shapes
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(20, 120)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.random(3) * 255
    img += rng.normal(0, 12, img.shape)  # texture
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def seed_chain():
    from torchvision import transforms as T

    return T.Compose([
        T.Resize((640, 640)),
        T.RandomChoice([T.RandomCrop(640), T.RandomCrop(576), T.RandomCrop(512), T.RandomCrop(384), T.RandomCrop(320)]),
        T.Resize((576, 576)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


def run_seed(paths, tf):
    for p in paths:
        with Image.open(p) as im:
            tf(im.convert("RGB"))


def run_ours(paths, tf, norm=None):
    for p in paths:
        x = tf(read_image(p))
        if norm is not None:
            norm(x.unsqueeze(0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    ours_tf = TrainTransform(640, 576, [640, 576, 512, 384, 320], hflip=True)
    norm = Normalizer(MEAN, STD)
    seed_tf = seed_chain()
    with tempfile.TemporaryDirectory() as d:
        for w, h, label in ((500, 375, "VOC-like 500×375"), (640, 480, "COCO-like 640×480")):
            paths = []
            for i in range(args.images):
                p = os.path.join(d, f"{w}_{i}.jpg")
                photo_like(w, h, rng).save(p, quality=90)
                paths.append(p)
            kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
            run_seed(paths[:5], seed_tf), run_ours(paths[:5], ours_tf, norm)  # warm up
            torch.manual_seed(0)
            t0 = time.perf_counter()
            run_seed(paths, seed_tf)
            t_seed = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_ours(paths, ours_tf)
            t_worker = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_ours(paths, ours_tf, norm)
            t_ours = time.perf_counter() - t0
            n = len(paths)
            print(f"{label} (~{kb:.0f} kB), one core: seed PIL chain {n / t_seed:6.1f} img/s | mlcore worker "
                  f"(uint8 out; normalized on the GPU) {n / t_worker:6.1f} img/s = {t_seed / t_worker:4.1f}× | "
                  f"with CPU normalization {n / t_ours:6.1f} img/s = {t_seed / t_ours:4.1f}×")


if __name__ == "__main__":
    main()
