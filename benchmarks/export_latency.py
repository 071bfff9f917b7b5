"""CPU inference latency of an exported model: PyTorch eager against onnxruntime.

What a deployment on the CPU gains from ``mlcore export --format onnx``: ResNet-101
(the ``resnet101`` classifier) and SSGRL (on ResNet-101), 80 classes, at 448 px, random
weights (nothing is downloaded). Both sides run the same exported module — uint8 images
in, normalization, model, sigmoid — PyTorch eager under ``inference_mode`` (the baseline,
what ``mlcore predict`` runs), onnxruntime's CPU provider on the file ``mlcore export``
writes (built by the same code, so checked against eager to 1e-4 first). Both use the
machine's cores (torch's and onnxruntime's default thread counts). Batch-norm statistics
come from one random batch (see :func:`settle_batchnorm`).

Each latency is the mean over ``--steps`` steps after one warm-up step; the whole
comparison runs ``--runs`` times; figures are median [min–max] over the runs, and the
ratio is eager ÷ onnxruntime per run (above 1: onnxruntime is faster).

    python benchmarks/export_latency.py [--side 448] [--batch 1 32] [--runs 3] [--steps 2]
    python benchmarks/export_latency.py --side 64 --batch 1 4 --steps 2   # a quick look
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlcore  # noqa: E402
from mlcore.export import deployed, onnx_bytes  # noqa: E402
from mlcore.labels import LabelInfo  # noqa: E402

CLASSES = 80
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def models(folder: Path) -> dict[str, torch.nn.Module]:
    """ResNet-101 and SSGRL (official sizes: 1024 hidden, 2048 out, 300-d words), random."""
    g = np.random.default_rng(0)
    classes = [f"label{i}" for i in range(CLASSES)]
    info = LabelInfo.from_targets(classes, (g.random((500, CLASSES)) < 0.05).astype(np.uint8))
    words = folder / "words.npy"
    np.save(words, g.normal(size=(CLASSES, 300)).astype(np.float32))
    torch.manual_seed(0)
    return {
        "ResNet-101": mlcore.create("model", "resnet101", num_classes=CLASSES),
        "SSGRL (ResNet-101)": mlcore.create("model", "ssgrl", num_classes=CLASSES, info=info,
                                            embeddings=str(words)),
    }


def settle_batchnorm(model: torch.nn.Module, side: int) -> torch.nn.Module:
    """Batch-norm statistics from one batch of random images (as a trained network's are
    from its data): with the initial ones (mean 0, var 1) a random ResNet-101's activations
    grow by orders of magnitude, its logits reach 1e4, and its probabilities would be an
    arbitrary test of float32 rounding rather than a model's."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, side, side))
    return model.eval()


def mean_seconds(fn, x, steps: int) -> float:
    """Mean seconds of ``fn(x)`` over ``steps`` calls, after one warm-up call."""
    fn(x)
    start = time.perf_counter()
    for _ in range(steps):
        fn(x)
    return (time.perf_counter() - start) / steps


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def main(argv: list[str] | None = None) -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=448, help="input side in pixels (448: the recipes')")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes to time")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per measurement, after one warm-up")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0: each library's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if args.threads:
        opts.intra_op_num_threads = args.threads
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {torch.get_num_threads()} torch "
          f"threads; {CLASSES} classes, {args.side} px, uint8 in → probabilities out; {args.runs} runs × "
          f"{args.steps} steps after one warm-up\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models(Path(tmp)).items():
            wrapped = deployed(settle_batchnorm(model, args.side), *IMAGENET)
            start = time.perf_counter()
            data, diffs = onnx_bytes(wrapped, args.side, {})
            session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
            print(f"{name}: exported in {time.perf_counter() - start:.0f} s, max |onnxruntime − eager| "
                  f"{max(diffs.values()):.1e}")

            def eager(x, m=wrapped):
                with torch.inference_mode():
                    return m(x)

            def onnx(x, s=session):
                return s.run(None, {"images": x.numpy()})[0]

            for b in args.batch:
                x = torch.randint(0, 256, (b, 3, args.side, args.side), dtype=torch.uint8)
                e, o = [], []
                for _ in range(args.runs):  # alternate, so a slow spell of the machine hits both
                    e.append(mean_seconds(eager, x, args.steps) * 1e3)
                    o.append(mean_seconds(onnx, x, args.steps) * 1e3)
                rows.append((name, b, e, o, [a / c for a, c in zip(e, o)]))
                print(f"  batch {b}: eager {spread(e)} ms, onnxruntime {spread(o)} ms", flush=True)
    print(f"\n{'model':<20} {'batch':>5}  {'eager ms/step':>24}  {'onnxruntime ms/step':>24}  "
          f"{'eager ÷ onnxruntime':>20}")
    for name, b, e, o, r in rows:
        print(f"{name:<20} {b:>5}  {spread(e):>24}  {spread(o):>24}  {spread(r, '{:.2f}'):>20}")


if __name__ == "__main__":
    main()
