"""Classification heads, forward + backward on given feature maps: what each costs per image.

Two questions, on random B×2048×14×14 maps (a ResNet-50's at 448 px; the trunk is left
out, so only the heads are timed), in training mode (dropout on), the map requiring grad
(as when the backbone trains):

1. mlcore's ML-Decoder head against the official formulation written out plainly here
   (github.com/Alibaba-MIIL/ML_Decoder ``src_files/ml_decoder/ml_decoder.py``:
   ``nn.MultiheadAttention`` called as the official calls it, and the ``torch.jit.script``
   ``GroupFC`` — a loop over the G groups, each group's matmul copied into a buffer), with
   the same weights, at OpenImages scale (9,605 classes, G = 200, g = 49) and at COCO scale
   (80 classes; the official 100 groups capped at 80). Their outputs are asserted equal (in
   evaluation mode, where nothing is random).
2. Every head's cost per image beside the plain classifier's (global average pool + fc):
   CSRA (4 heads), ML-GCN, ML-Decoder (and Query2Label's when ``benchmarks/heads_q2l.py`` is there and
   has ``measure()``: its own batch), at COCO scale.

Each measurement is the mean of ``--steps`` steps after one warm-up; the whole comparison
runs ``--runs`` times, and ratios are printed as median [min–max] over the runs. Beside
each ratio, the two formulations' counted floating-point operations (``flops.py``): they
are equal (the group FC does the same products either way), so every gain is the official
loop's overhead — its ~G small operations per pass, each a kernel launch on a GPU, and
each group's slice whose backward fills a whole-size gradient.

    python benchmarks/heads.py [--batch 4] [--runs 3] [--steps 3] [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mlcore_builtins.csra import TEMPERATURES  # noqa: E402
from mlcore_builtins.csra.model import CSRA  # noqa: E402
from mlcore_builtins.ml_decoder.model import MLDecoder  # noqa: E402
from mlcore_builtins.mlgcn.model import MLGCN  # noqa: E402
from flops import forward_backward_flops  # noqa: E402

IN_DIM = 2048


# -- the official formulation, written out plainly ------------------------------------------

@torch.jit.script
def group_fc(h: torch.Tensor, duplicate_pooling: torch.Tensor, out_extrap: torch.Tensor) -> None:
    """The official ``GroupFC.__call__``: group i's output is ``h[:, i] @ duplicate_pooling[i]``,
    copied into ``out_extrap[:, i]``, one group at a time."""
    for i in range(h.shape[1]):
        h_i = h[:, i, :]
        if len(duplicate_pooling.shape) == 3:
            w_i = duplicate_pooling[i, :, :]
        else:
            w_i = duplicate_pooling
        out_extrap[:, i, :] = torch.matmul(h_i, w_i)


class OfficialLayer(nn.Module):
    """``TransformerDecoderLayerOptimal``'s forward, with its parameter names."""

    def __init__(self, d: int = 768, nhead: int = 8, ff: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.multihead_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        tgt = tgt + self.dropout1(tgt)
        tgt = self.norm1(tgt)
        tgt2 = self.multihead_attn(tgt, memory, memory)[0]
        tgt = tgt + self.dropout2(tgt2)
        tgt = self.norm2(tgt)
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        tgt = tgt + self.dropout3(tgt2)
        return self.norm3(tgt)


class OfficialHead(nn.Module):
    """The official ``MLDecoder.forward`` (not zero-shot), its parameters under ``decoder.``."""

    def __init__(self, num_classes: int, groups: int, d: int = 768):
        super().__init__()
        self.num_classes = num_classes
        self.decoder = nn.Module()
        self.decoder.embed_standart = nn.Linear(IN_DIM, d)
        self.decoder.query_embed = nn.Embedding(groups, d).requires_grad_(False)
        self.decoder.layers = nn.ModuleList([OfficialLayer(d)])
        self.factor = int(num_classes / groups + 0.999)
        self.decoder.duplicate_pooling = nn.Parameter(torch.empty(groups, d, self.factor))
        self.decoder.duplicate_pooling_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.decoder.duplicate_pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = F.relu(self.decoder.embed_standart(x.flatten(2).transpose(1, 2)), inplace=True)
        bs = emb.shape[0]
        tgt = self.decoder.query_embed.weight.unsqueeze(1).expand(-1, bs, -1)
        h = self.decoder.layers[0](tgt, emb.transpose(0, 1)).transpose(0, 1)
        out = torch.zeros(h.shape[0], h.shape[1], self.factor, device=h.device, dtype=h.dtype)
        group_fc(h, self.decoder.duplicate_pooling, out)
        h_out = out.flatten(1)[:, :self.num_classes]
        h_out += self.decoder.duplicate_pooling_bias
        return h_out


class OfficialHeadFreeGroupFC(OfficialHead):
    """The official head with its group FC made as cheap as it can be (one batched product):
    what any rewrite of the group FC alone can reach. Timed beside the official, its ratio is
    the bound on a group-FC speed-up (Amdahl: the decoder layer's products are shared)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = F.relu(self.decoder.embed_standart(x.flatten(2).transpose(1, 2)), inplace=True)
        bs = emb.shape[0]
        tgt = self.decoder.query_embed.weight.unsqueeze(1).expand(-1, bs, -1)
        h = self.decoder.layers[0](tgt, emb.transpose(0, 1))  # [G, B, D]
        out = torch.bmm(h, self.decoder.duplicate_pooling).transpose(0, 1).flatten(1)
        return out[:, :self.num_classes] + self.decoder.duplicate_pooling_bias


# -- mlcore's heads on a given map ------------------------------------------------------------

class Given(nn.Module):
    """A "backbone" that hands the feature map through: the heads alone are timed."""

    out_dim = IN_DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Plain(nn.Module):
    """A ResNet's own classifier: global average pool + fc."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(IN_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


def mlgcn(num_classes: int) -> nn.Module:
    graph = torch.eye(num_classes) + (torch.rand(num_classes, num_classes) < 0.1).float() * 0.25
    return MLGCN(Given(), torch.randn(num_classes, 300), graph)


def seconds(model: nn.Module, x: torch.Tensor, steps: int) -> float:
    """Mean seconds of one forward + backward (training mode), after one warm-up step
    (on a GPU, synchronized: the kernels' time, not their launch)."""
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        x.grad = None
        model(x).float().sum().backward()

    def sync():
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def q2l_rows(runs: int, steps: int) -> list[float] | None:
    """Query2Label's mlcore head, ms per image per run, from ``benchmarks/heads_q2l.py``'s
    ``measure()`` (a colleague's: 80 classes on the same 2048×14×14 maps, its own batch);
    None when that script is absent."""
    try:
        import heads_q2l
    except ImportError:
        return None
    measure = getattr(heads_q2l, "measure", None)
    if measure is None:
        return None
    batch = getattr(heads_q2l, "BATCH", 1)
    # one timed step per run: its head (a 2048-wide encoder and decoder) costs seconds per step here
    return [r["mlcore_s"] / batch * 1e3 for r in measure(runs, 1)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--side", type=int, default=14, help="the map's side (14: 448 px on a ResNet-50)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-q2l", action="store_true", help="leave out benchmarks/heads_q2l.py's Query2Label rows")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the heads run (float32)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    b = args.batch
    x = torch.randn(b, IN_DIM, args.side, args.side, device=device, requires_grad=True)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; maps {b}×{IN_DIM}×{args.side}×{args.side}, "
          f"forward+backward, training mode; {args.runs} runs × {args.steps} steps\n")

    # 1. mlcore's ML-Decoder head against the official formulation
    scales = {"OpenImages (C 9605, G 200, g 49)": (9605, 200), "COCO (C 80, G 100→80, g 1)": (80, 100)}
    pairs, counted = {}, {}
    for name, (c, g) in scales.items():
        ours = MLDecoder(Given(), c, g).head.to(device)
        official = OfficialHead(c, min(g, c)).to(device)
        official.load_state_dict(ours.state_dict())  # the same parameter names: the same weights
        bound = OfficialHeadFreeGroupFC(c, min(g, c)).to(device)
        bound.load_state_dict(ours.state_dict())
        with torch.no_grad():
            ours.eval(), official.eval(), bound.eval()
            a, o, f = ours(x), official(x), bound(x)
        assert torch.allclose(a, o, rtol=1e-4, atol=1e-4), (name, (a - o).abs().max())
        assert torch.allclose(f, o, rtol=1e-4, atol=1e-4), (name, (f - o).abs().max())
        pairs[name] = (ours, official, bound)
        counted[name] = forward_backward_flops(official, x) / forward_backward_flops(ours, x)
    times: dict[str, list[tuple[float, float, float]]] = {n: [] for n in scales}
    for _ in range(args.runs):
        for name, (ours, official, bound) in pairs.items():
            times[name].append((seconds(official, x, args.steps), seconds(ours, x, args.steps),
                                seconds(bound, x, args.steps)))
    print("ML-Decoder head, official formulation vs mlcore (ms per image; median [min–max] over runs);\n"
          "'bound': the official with its group FC as one product — what a group-FC rewrite alone can reach;\n"
          "'FLOPs': the official's counted floating-point operations over mlcore's:")
    for name, ts in times.items():
        off = [o / b * 1e3 for o, _, _ in ts]
        own = [m / b * 1e3 for _, m, _ in ts]
        ratio = [o / m for o, m, _ in ts]
        limit = [o / f for o, _, f in ts]
        print(f"  {name:34s} official {spread(off, '{:.1f}')}  mlcore {spread(own, '{:.1f}')}  "
              f"speed-up {spread(ratio)}×  (bound {spread(limit)}×, FLOPs {counted[name]:.3f}×)")

    # 2. every head beside the plain classifier, at COCO scale
    c = 80
    heads = {"plain (avg pool + fc)": Plain(c), "CSRA (4 heads)": CSRA(Given(), c, TEMPERATURES[4], 0.5),
             "ML-GCN": mlgcn(c), "ML-Decoder (G 80)": MLDecoder(Given(), c, 100)}
    heads = {name: model.to(device) for name, model in heads.items()}
    cost: dict[str, list[float]] = {n: [] for n in heads}
    for _ in range(args.runs):
        for name, model in heads.items():
            cost[name].append(seconds(model, x, args.steps) / b * 1e3)
    if not args.no_q2l and device.type == "cpu":  # heads_q2l.py picks its own device
        try:
            q2l = q2l_rows(args.runs, args.steps)
        except Exception as exc:  # a colleague's script: report it, do not fail
            print(f"(benchmarks/heads_q2l.py measure() failed: {exc})")
            q2l = None
        if q2l:
            cost["Query2Label (heads_q2l)"] = q2l
    plain = cost["plain (avg pool + fc)"]
    print("\nHeads at COCO scale (80 classes), ms per image forward+backward, and × the plain classifier:")
    for name, ms in cost.items():
        ratio = [m / p for m, p in zip(ms, plain)]
        print(f"  {name:24s} {spread(ms, '{:.2f}')} ms   ×{spread(ratio, '{:.1f}')}")


if __name__ == "__main__":
    main()
