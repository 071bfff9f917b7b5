"""Query2Label's head (everything after the trunk): mlcore's ``q2l`` against the official
formulation (SlongLiu/query2labels ``lib/models/transformer.py``: ``nn.MultiheadAttention``
per layer on sequence-first tensors, called with its default ``need_weights=True``, separate
q/k/v projections since q, k and v are different tensors, the zero target and the label
queries repeated over the batch), re-written plainly here with the same parameter names so
both hold the same weights.

Setting: the released R101-448 model's head — 80 classes, width 2048, 4 heads, feed-forward
8192, 1 encoder + 2 decoder layers, dropout 0.1 — on random 14×14 feature maps (what
ResNet-101 gives at 448 px), batch 2, float32, training mode; forward + backward. The
outputs are checked equal (in evaluation mode: dropout off) before timing.

Memory: on CUDA the peak allocated during forward + backward; on the CPU (where
``tracemalloc`` does not see torch's allocations) the bytes of the activations autograd saves
for the backward pass (parameters and input left out) — what makes the peak of a training step.

Beside the ratios, the two formulations' counted floating-point operations (``flops.py``):
official/mlcore is 1.109 in float32 (the re-associated cross-attention and the once-per-batch
first decoder queries; the encoder and the feed-forwards, most of the work, are the same
products in both). Where matrix products are the time, that is the most an exact rewrite
of the official computation can gain.

``python benchmarks/heads_q2l.py`` prints the ratios over 3 runs (min–max).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from mlcore_builtins.q2l.model import Query2Label, sine_position_encoding  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import forward_backward_flops  # noqa: E402

CLASSES, DIM, HEADS, FF, SIDE, BATCH = 80, 2048, 4, 8192, 14, 2


class Features(nn.Module):
    """A stand-in trunk: the feature map passes through (only ``out_dim`` matters)."""

    out_dim = DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class OfficialEncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(DIM, HEADS, dropout=0.1)
        self.linear1, self.linear2 = nn.Linear(DIM, FF), nn.Linear(FF, DIM)
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.drop, self.drop1, self.drop2 = nn.Dropout(0.1), nn.Dropout(0.1), nn.Dropout(0.1)

    def forward(self, src, pos):  # [P, B, d]
        q = k = src + pos
        src = self.norm1(src + self.drop1(self.self_attn(q, k, value=src)[0]))
        return self.norm2(src + self.drop2(self.linear2(self.drop(F.relu(self.linear1(src))))))


class OfficialDecoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(DIM, HEADS, dropout=0.1)
        self.linear1, self.linear2 = nn.Linear(DIM, FF), nn.Linear(FF, DIM)
        self.norm2, self.norm3 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.drop, self.drop2, self.drop3 = nn.Dropout(0.1), nn.Dropout(0.1), nn.Dropout(0.1)

    def forward(self, tgt, memory, pos, query_pos):  # [C, B, d], [P, B, d]
        att = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory)[0]
        tgt = self.norm2(tgt + self.drop2(att))
        return self.norm3(tgt + self.drop3(self.linear2(self.drop(F.relu(self.linear1(tgt))))))


class OfficialHead(nn.Module):
    """The official transformer + query embedding + GroupWiseLinear, its module names."""

    def __init__(self):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.encoder = nn.Module()
        self.transformer.encoder.layers = nn.ModuleList([OfficialEncoderLayer()])
        self.transformer.decoder = nn.Module()
        self.transformer.decoder.layers = nn.ModuleList([OfficialDecoderLayer() for _ in range(2)])
        self.transformer.decoder.norm = nn.LayerNorm(DIM)
        self.query_embed = nn.Embedding(CLASSES, DIM)
        self.fc = nn.Module()
        self.fc.W = nn.Parameter(torch.zeros(1, CLASSES, DIM))
        self.fc.b = nn.Parameter(torch.zeros(1, CLASSES))
        self.register_buffer("pe", sine_position_encoding(SIDE, SIDE, DIM)[None], persistent=False)

    def forward(self, src):
        b = src.shape[0]
        pos = self.pe.repeat(b, 1, 1, 1).to(src.dtype).flatten(2).permute(2, 0, 1)
        src = src.flatten(2).permute(2, 0, 1)
        query = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        for layer in self.transformer.encoder.layers:
            src = layer(src, pos)
        tgt = torch.zeros_like(query)
        for layer in self.transformer.decoder.layers:
            tgt = layer(tgt, src, pos, query)
        hs = self.transformer.decoder.norm(tgt).transpose(0, 1)
        return (self.fc.W * hs).sum(-1) + self.fc.b


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct activation tensors autograd saves in a forward pass of
    ``model`` on ``x`` (the parameters and the input, which exist anyway, left out)."""
    own = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.sum().backward()
    return sum(seen.values())


def _step(model: nn.Module, x: torch.Tensor, device: torch.device, amp: bool = False) -> tuple[float, int]:
    """Seconds of one forward + backward, and its memory (see the module docstring)."""
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out.float().pow(2).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() - base
    return time.perf_counter() - start, 0


def measure(repeats: int = 3, iters: int | None = None, *, reassociate: bool | None = None,
            amp: bool = False) -> list[dict]:
    """One dict per run: seconds of one forward + backward (best of ``iters``: default 1 on
    the CPU, 10 on CUDA) of the official formulation and of mlcore's, their memory, and the
    ratios (``flops_ratio``: the counted operations, official/mlcore). Each model is warmed
    up once first (on the CPU that pass also counts the saved bytes, which do not vary); the
    order of the two alternates between runs, so a drift in the machine's load is shared.
    ``reassociate`` forces mlcore's cross-attention one way
    (``DecoderLayer.reassociate``; None: its own choice); ``amp``: both under bf16 autocast
    (the outputs are compared in float32 first either way)."""
    from mlcore_builtins.q2l.model import DecoderLayer

    DecoderLayer.reassociate = reassociate
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    iters = iters or (10 if device.type == "cuda" else 1)
    torch.manual_seed(0)
    ours = Query2Label(Features(), CLASSES, heads=HEADS, ff_dim=FF).to(device)
    official = OfficialHead().to(device)
    official.load_state_dict(ours.state_dict())
    x = torch.randn(BATCH, DIM, SIDE, SIDE, device=device)
    ours.eval(), official.eval()
    with torch.no_grad():
        a, b = ours(x), official(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), f"outputs differ by {(a - b).abs().max():.3g}"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        counted = forward_backward_flops(official, x) / forward_backward_flops(ours, x)
    ours.train(), official.train()
    models = {"official": official, "mlcore": ours}
    saved = {}
    for name, model in models.items():  # warm-up
        model.zero_grad(set_to_none=True)
        saved[name] = _saved_bytes(model, x)
        if device.type == "cuda":
            _step(model, x, device, amp)
    runs = []
    for i in range(repeats):
        row = {}
        for name in (("official", "mlcore") if i % 2 == 0 else ("mlcore", "official")):
            times, mems = zip(*(_step(models[name], x, device, amp) for _ in range(iters)))
            row[f"{name}_s"] = min(times)
            row[f"{name}_mem"] = max(mems) if device.type == "cuda" else saved[name]
        row["speedup"] = row["official_s"] / row["mlcore_s"]
        row["flops_ratio"] = counted
        row["memory_ratio"] = row["mlcore_mem"] / row["official_mem"]
        row["device"], row["amp"], row["reassociate"] = device.type, amp, reassociate
        row["memory"] = "peak allocated" if device.type == "cuda" else "saved for backward"
        runs.append(row)
    DecoderLayer.reassociate = None
    return runs


def report(runs: list[dict], label: str) -> None:
    for r in runs:
        print(f"  official {r['official_s'] * 1e3:8.1f} ms {r['official_mem'] / 2**20:8.1f} MiB | "
              f"mlcore {r['mlcore_s'] * 1e3:8.1f} ms {r['mlcore_mem'] / 2**20:8.1f} MiB")
    sp = [r["speedup"] for r in runs]
    mr = [r["memory_ratio"] for r in runs]
    print(f"{label} [{runs[0]['device']}, batch {BATCH}, {SIDE}x{SIDE}x{DIM}, {CLASSES} classes, forward+backward]")
    print(f"  speedup official/mlcore: median {statistics.median(sp):.3f} (min {min(sp):.3f}, max {max(sp):.3f}); "
          f"counted FLOPs official/mlcore {runs[0]['flops_ratio']:.3f}")
    print(f"  memory mlcore/official ({runs[0]['memory']}): median {statistics.median(mr):.3f} "
          f"(min {min(mr):.3f}, max {max(mr):.3f})")


def main(argv: list[str]) -> None:
    """Prints the default comparison; ``--variants`` adds mlcore with the cross-attention as
    written (no reassociation) and, on CUDA, both under bf16 autocast."""
    report(measure(3), "float32")
    if "--variants" in argv:
        report(measure(3, reassociate=False), "float32, mlcore's cross-attention as written")
        if torch.cuda.is_available():
            report(measure(3, amp=True), "bf16 autocast")


if __name__ == "__main__":
    main(sys.argv[1:])
