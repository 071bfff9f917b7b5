"""The cost of checkpoint checksums: writing and loading a ResNet-101 checkpoint
(torchvision, ``weights=None``: about 170 MB of tensors) with the checksum
(``mlcore.engine.checkpoint.atomic_save``, ``mlcore.weights.safe_load``) against the same
file operations without it (the atomic ``torch.save`` and the ``weights_only``
``torch.load`` mlcore used before), in the same process, on the same folder.

Three runs; in each, every variant is timed ``REPEATS`` times, interleaved, and its median
kept; the ratio with/without is printed per run, then the median ratio and the spread
(lowest–highest) over the runs. The files are in the page cache (a resume on the machine
that wrote the checkpoint): reading from a cold disk makes the baseline slower and the
ratio smaller. Writes include the fsync, during which the written file is hashed.

    python benchmarks/checkpoint_integrity.py [--folder DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

RUNS = 3
REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", help="where to write the checkpoints (default: a temporary folder)")
    args = parser.parse_args()

    import torch
    import torchvision

    from mlcore.engine.checkpoint import atomic_save
    from mlcore.files import atomic_open
    from mlcore.weights import CHECKPOINT_FORMAT, hash_threads, safe_load, verify_checkpoint
    from mlcore.weights import _plain_torch_load  # the weights_only torch.load mlcore did before

    torch.manual_seed(0)
    model = torchvision.models.resnet101(weights=None)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": 2, "model": model.state_dict(), "epoch": 1, "step": 100}
    megabytes = sum(t.numel() * t.element_size() for t in ckpt["model"].values()) / 1e6

    def save_plain(path: str) -> None:  # what atomic_save did before checksums
        with atomic_open(path, durable=True) as f:
            torch.save(ckpt, f)

    folder = args.folder or tempfile.mkdtemp(prefix="mlcore-bench-ckpt-")
    plain, checked = os.path.join(folder, "plain.pt"), os.path.join(folder, "checked.pt")
    save_plain(plain)
    atomic_save(ckpt, checked)
    assert verify_checkpoint(checked) and not verify_checkpoint(plain)
    back = safe_load(checked)["model"]
    assert all(torch.equal(back[k], v) for k, v in ckpt["model"].items())

    variants = {
        "write": (lambda: save_plain(plain), lambda: atomic_save(ckpt, checked)),
        "load": (lambda: _plain_torch_load(plain), lambda: safe_load(checked)),
    }
    size = os.path.getsize(checked) / 1e6
    print(f"ResNet-101 checkpoint: {megabytes:.0f} MB of tensors, file {size:.0f} MB; {os.cpu_count()} CPUs; "
          f"hashing threads: {hash_threads(beside=True)} beside torch.load, {hash_threads(beside=False)} "
          f"during the write's fsync; load average {os.getloadavg()[0]:.2f} at start; "
          f"{RUNS} runs, median of {REPEATS} each")
    ratios: dict[str, list[float]] = {k: [] for k in variants}
    for run in range(1, RUNS + 1):
        line = []
        for name, (base, ours) in variants.items():
            times: dict[str, list[float]] = {"base": [], "ours": []}
            for _ in range(REPEATS):
                for key, fn in (("base", base), ("ours", ours)):
                    t = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t)
            b, o = statistics.median(times["base"]), statistics.median(times["ours"])
            ratios[name].append(o / b)
            line.append(f"{name} {b:.3f} s → {o:.3f} s (×{o / b:.3f})")
        print(f"run {run}: " + "   ".join(line))
    for name, rs in ratios.items():
        print(f"{name:5s} with/without checksum: ×{statistics.median(rs):.3f} "
              f"(spread over {RUNS} runs ×{min(rs):.3f}–×{max(rs):.3f})")
    if not args.folder:
        for p in (plain, checked):
            os.unlink(p)
        os.rmdir(folder)


if __name__ == "__main__":
    main()
