"""torch.distributed, as torchrun sets it up: one process per device, NCCL on CUDA and
gloo on the CPU, collective timeouts so that a dead rank makes the others fail instead
of hanging, and the exact gathering of evaluation results.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world`` (1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(timeout_s: float, device: torch.device) -> Dist:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), once.

    The backend follows the run's device, not the machine: NCCL with one GPU per local
    rank when ``device`` is CUDA, gloo otherwise (``train.device: cpu`` on a GPU machine
    trains on the CPU, ranks and all). More local ranks than GPUs is a config error.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            check_gpus_for(local + 1, device)
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(rank, world, local)


def check_gpus_for(processes: int, device: torch.device) -> None:
    """A CUDA run needs a GPU for each of this machine's ``processes`` (NCCL shares none)."""
    visible = torch.cuda.device_count() if device.type == "cuda" else processes
    if processes > visible:
        raise ConfigError(f"--nproc: {processes} processes need a GPU each, but {visible} CUDA device(s) "
                          f"are visible here; start at most {visible}, or set train.device: cpu")


def gather_rows(indices: torch.Tensor, rows: list[torch.Tensor], n: int, d: Dist) -> list[torch.Tensor]:
    """Every rank's rows put back in dataset order: exactly ``n`` of each, no padding.

    ``indices`` are the dataset indices of this rank's rows; ``rows`` tensors (scores,
    targets, …) with one row per index. Single-process: just reordered.
    """
    if d.enabled:
        parts: list = [None] * d.world
        dist.all_gather_object(parts, (indices.cpu(), [r.cpu() for r in rows]))
        indices = torch.cat([p[0] for p in parts])
        rows = [torch.cat([p[1][k] for p in parts]) for k in range(len(rows))]
    if len(indices) != n or not torch.equal(torch.sort(indices).values, torch.arange(n)):
        raise RuntimeError(f"evaluation gathered {len(indices)} rows for {n} samples")
    if torch.equal(indices, torch.arange(n)):
        return list(rows)  # already in dataset order (one process, no shuffle): no N×C copy
    order = torch.argsort(indices)
    return [r[order] for r in rows]
