"""ML-Decoder (Ridnik et al., WACV 2023, "ML-Decoder: Scalable and Versatile Classification
Head"): the official head (github.com/Alibaba-MIIL/ML_Decoder, ``src_files/ml_decoder/
ml_decoder.py``) computed the same way, rewritten for torch 2.x and for speed.

For a feature map x [B, D_in, h, w] (no pooling, no position encoding):

* ``memory = ReLU(embed_standart(x_p))`` at every position p: [B, P, D];
* the queries: G fixed embeddings ``query_embed.weight`` [G, D] (never trained, as the
  official ``requires_grad_(False)``), or in zero-shot mode ``ReLU(wordvec_proj(v))`` of
  the label word vectors v [N, d] (one query per label);
* one decoder layer without self-attention — ``t = norm1(q + dropout1(q))`` (the official
  code's quirk: it adds the queries to themselves where a self-attention output would go),
  ``t = norm2(t + dropout2(MHA(t, memory, memory)))`` (8 heads, attention dropout),
  ``t = norm3(t + dropout3(linear2(dropout(ReLU(linear1(t))))))``; no final norm;
* the group FC: query i's output times ``duplicate_pooling[i]`` [D, g] gives g logits;
  flattened query-major, the first C kept, plus ``duplicate_pooling_bias`` [C]. In
  zero-shot mode one shared ``duplicate_pooling`` [D, 1] and bias [1]: one logit per
  label vector, so unseen labels are scored from their vectors alone.

Why rewritten: the official wraps its layer in ``nn.TransformerDecoder``, which torch 2.x
calls with ``tgt_is_causal`` and inspects (``layers[0].self_attn``) — the official layer
fails there. Here the layer is written out; attention is ``scaled_dot_product_attention``
over the packed ``in_proj`` weights (the official ``nn.MultiheadAttention`` names, so its
files load); the query-side work is done once for the batch when nothing random is in
it (evaluation); and the group FC is one batched matmul instead of the official per-group
loop (``torch.jit.script`` ``GroupFC``: G small matmuls copied into a buffer, and as many
in-place copies for autograd to undo).

Parameter names are the official ones under ``head.`` (the official: ``fc.`` on timm's
ResNet-50, ``head.`` on TResNet): ``head.decoder.{embed_standart, query_embed,
layers.0.*, duplicate_pooling, duplicate_pooling_bias}``, ``head.wordvec_proj``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlcore import MlcoreError, WeightLayout

#: the trunk of timm's (and torchvision's) ResNet: the official ResNet-50's keys
RESNET_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


class DecoderLayer(nn.Module):
    """The official ``TransformerDecoderLayerOptimal``: no self-attention, cross-attention
    with ``heads`` heads, an FFN with ReLU; LayerNorm eps 1e-5, every dropout ``dropout``
    (the official 0.1, also on the attention weights). ``forward(queries [1 or B, N, D],
    memory [B, P, D]) -> [B, N, D]``."""

    def __init__(self, dim: int, heads: int = 8, ff_dim: int = 2048, dropout: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        if dim % heads:
            raise MlcoreError(f"ML-Decoder: decoder_dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.multihead_attn = CrossAttention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        batch = memory.shape[0]
        if self.training and self.dropout1.p > 0 and queries.shape[0] != batch:
            # the official expands the queries over the batch before dropout1: one mask per image
            queries = queries.expand(batch, -1, -1)
        t = self.norm1(queries + self.dropout1(queries))
        t = self.norm2(t + self.dropout2(self.multihead_attn(t, memory)))
        return self.norm3(t + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(t))))))


class CrossAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight`` [3D, D] packing q, k, v;
    ``in_proj_bias``; ``out_proj``) and initialization, computed with
    ``scaled_dot_product_attention``. Queries [1 or B, N, D] (one row shared by the batch
    is projected once), memory [B, P, D]."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention._reset_parameters
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        dim = queries.shape[-1]
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(queries, w[:dim], b[:dim])
        kv = F.linear(memory, w[dim:], b[dim:])  # k and v in one matmul
        batch, n, p = memory.shape[0], q.shape[1], memory.shape[1]
        h, dh = self.heads, dim // self.heads
        q = q.view(q.shape[0], n, h, dh).transpose(1, 2).expand(batch, -1, -1, -1)
        k, v = kv.view(batch, p, 2, h, dh).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, n, dim))


class Decoder(nn.Module):
    """The parameters the official keeps on its ``nn.TransformerDecoder`` (``decoder.*``),
    under the same names."""

    def __init__(self, in_dim: int, dim: int, layer: DecoderLayer, groups: int | None,
                 pooling_shape: tuple[int, ...], num_bias: int):
        super().__init__()
        self.embed_standart = nn.Linear(in_dim, dim)  # the official spelling
        self.query_embed = None
        if groups is not None:
            self.query_embed = nn.Embedding(groups, dim)
            self.query_embed.requires_grad_(False)  # fixed queries: the official's
        self.layers = nn.ModuleList([layer])
        self.duplicate_pooling = nn.Parameter(torch.empty(pooling_shape))
        self.duplicate_pooling_bias = nn.Parameter(torch.zeros(num_bias))
        nn.init.xavier_normal_(self.duplicate_pooling)


class MLDecoderHead(nn.Module):
    """The ML-Decoder head: ``forward(feature map [B, in_dim, h, w] or tokens [B, P,
    in_dim]) -> logits [B, C]`` (zero-shot: [B, N], N the label vectors' count).

    ``groups``: G ≤ C fixed queries, each giving g = int(C/G + 0.999) logits (the official
    rounding up); ``label_vectors`` (zero-shot mode): [N, d] word vectors, the
    queries — :meth:`set_label_vectors` replaces them to score other labels.
    """

    def __init__(self, in_dim: int, num_classes: int, groups: int | None = None, *, dim: int = 768,
                 heads: int = 8, ff_dim: int = 2048, dropout: float = 0.1,
                 label_vectors: torch.Tensor | None = None):
        super().__init__()
        layer = DecoderLayer(dim, heads, ff_dim, dropout)
        self.zsl = label_vectors is not None
        self.num_classes = num_classes
        if self.zsl:
            if label_vectors.ndim != 2:
                raise MlcoreError(f"ML-Decoder: label vectors must be N×d, got {tuple(label_vectors.shape)}")
            word_dim = label_vectors.shape[1]
            self.groups, self.group_size = num_classes, 1
            self.decoder = Decoder(in_dim, dim, layer, None, (dim, 1), 1)
            # the official: Linear(300, D), Identity when D is the word vectors' width
            self.wordvec_proj = nn.Linear(word_dim, dim) if word_dim != dim else nn.Identity()
            self.register_buffer("label_vectors", label_vectors.float().clone(), persistent=False)
        else:
            groups = min(groups or num_classes, num_classes)
            self.groups, self.group_size = groups, int(num_classes / groups + 0.999)
            self.decoder = Decoder(in_dim, dim, layer, groups, (groups, dim, self.group_size), num_classes)

    def set_label_vectors(self, vectors: torch.Tensor) -> None:
        """Zero-shot mode: score the labels of ``vectors`` [N, d] from now on (e.g. the
        unseen labels at evaluation; the official ``update_wordvecs``)."""
        if not self.zsl:
            raise MlcoreError("ML-Decoder: label vectors are the queries only in zero-shot mode (zsl: true)")
        if vectors.ndim != 2 or vectors.shape[1] != self.label_vectors.shape[1]:
            raise MlcoreError(f"ML-Decoder: label vectors must be N×{self.label_vectors.shape[1]}, "
                              f"got {tuple(vectors.shape)}")
        self.label_vectors = vectors.to(self.label_vectors).clone()

    def queries(self) -> torch.Tensor:
        """The decoder's queries [N, D]."""
        if self.zsl:
            return F.relu(self.wordvec_proj(self.label_vectors))
        return self.decoder.query_embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2) if x.ndim == 4 else x  # [B, P, in_dim]
        memory = F.relu(self.decoder.embed_standart(tokens))
        h = self.decoder.layers[0](self.queries().unsqueeze(0), memory)  # [B, N, D]
        w = self.decoder.duplicate_pooling
        if self.zsl:
            return (h @ w).squeeze(-1) + self.decoder.duplicate_pooling_bias
        if self.group_size == 1:  # one query per class: a per-class dot product
            out = (h * w.squeeze(-1)).sum(-1)
        else:  # [G, B, D] @ [G, D, g]: every group's matmul at once
            out = torch.bmm(h.transpose(0, 1), w).transpose(0, 1).reshape(h.shape[0], -1)
        return out[:, :self.num_classes] + self.decoder.duplicate_pooling_bias


@dataclass(frozen=True)
class TResNetLayout(WeightLayout):
    """Official ML-Decoder TResNet files (``body.*`` with InPlaceABN, ``head.decoder.*``)
    read onto timm's TResNet (``backbone.model.body.*``, BatchNorm + activation).

    After the prefix renames, the official ``Sequential(conv, InPlaceABN)`` indices become
    timm's names (``conv1.0`` → ``conv1.conv``, ``conv1.1`` → ``conv1.bn``, the
    anti-aliased ``conv2.0.0``/``conv2.0.1``, ``downsample.1.0``/``.1.1``), as timm's own
    ``checkpoint_filter_fn`` does; InPlaceABN scales by ``|weight| + 1e-5``, so that is the
    BatchNorm weight; the BatchNorm counters (``counters``) that InPlaceABN lacks start at 0
    (they only matter for ``momentum=None``).
    """

    counters: tuple[str, ...] = ()

    RULES = ((re.compile(r"conv(\d+)\.0\.0\."), r"conv\1.conv."), (re.compile(r"conv(\d+)\.0\.1\."), r"conv\1.bn."),
             (re.compile(r"conv(\d+)\.0\."), r"conv\1.conv."), (re.compile(r"conv(\d+)\.1\."), r"conv\1.bn."),
             (re.compile(r"downsample\.(\d+)\.0\."), r"downsample.\1.conv."),
             (re.compile(r"downsample\.(\d+)\.1\."), r"downsample.\1.bn."))

    def apply(self, state: Mapping[str, Any]) -> dict:
        out = {}
        for key, value in super().apply(state).items():
            if key.startswith("backbone."):
                for pattern, repl in self.RULES:
                    key = pattern.sub(repl, key)
                if key.endswith(".bn.weight"):
                    value = value.abs() + 1e-5
            out[key] = value
        for key in self.counters:
            out.setdefault(key, torch.zeros((), dtype=torch.long))
        return out


def official_layouts(model: nn.Module) -> tuple[WeightLayout, ...]:
    """The official files' layouts that fit ``model``'s backbone: a ResNet (torchvision's
    or ``timm/resnet*``: ``conv1``…``layer4`` at the backbone's top or below one prefix)
    with the head at ``fc.``; a timm TResNet with the head at ``head.``."""
    names = {n for n, _ in model.backbone.named_modules()}
    prefix = next((n[:-len("conv1")] for n in sorted(names, key=len) if n.endswith("conv1")
                   and all(n[:-len("conv1")] + s in names for s in RESNET_STAGES)), None)
    if prefix is not None:
        return (WeightLayout("official ML-Decoder (ResNet)", detect="fc.decoder.",
                             rename=(("fc.", "head."), *((f"{s}.", f"backbone.{prefix}{s}.") for s in RESNET_STAGES))),)
    body = next((n for n in sorted(names, key=len) if n.endswith("body") and f"{n}.layer4" in names), None)
    if body is not None:
        counters = tuple(k for k in model.state_dict() if k.endswith(".num_batches_tracked"))
        return (TResNetLayout("official ML-Decoder (TResNet)", detect="body.",
                              rename=(("body.", f"backbone.{body}."),), counters=counters),)
    return ()


class MLDecoder(nn.Module):
    """``forward(images) -> logits``: ``backbone`` (any module with ``out_dim`` returning a
    feature map), then :class:`MLDecoderHead` (``head``) on every position. Official
    checkpoints load through ``mlcore.load_weights`` (:func:`official_layouts`)."""

    def __init__(self, backbone: nn.Module, num_classes: int, groups: int | None = None, **head: Any):
        super().__init__()
        self.backbone = backbone
        self.head = MLDecoderHead(backbone.out_dim, num_classes, groups, **head)
        self.weight_layouts = official_layouts(self)

    @property
    def class_axes(self) -> dict[str, tuple[int, ...]]:
        """The parameters indexed by class, for ``weights_classes`` reordering: with one
        query per class (G = C) the queries, the pooling and the bias, along axis 0; in
        zero-shot mode none (a label is its word vector, not a parameter). With G < C a
        query's g logits belong to g different classes: no permutation of parameters
        reorders them, so asking is an error."""
        head = self.head
        if head.zsl:
            return {}
        if head.group_size != 1:
            raise MlcoreError(f"model.weights_classes: ML-Decoder with num_groups < num_classes ({head.groups} "
                              f"groups for {head.num_classes} classes, {head.group_size} per group) cannot "
                              f"reorder its labels (a group's outputs belong to several classes); use "
                              f"num_groups: -1 or a file in the dataset's label order")
        return {f"head.decoder.{k}": (0,) for k in ("query_embed.weight", "duplicate_pooling",
                                                    "duplicate_pooling_bias")}

    def set_label_vectors(self, vectors: torch.Tensor) -> None:
        """Zero-shot mode: score the labels of ``vectors`` [N, d] (see the head's)."""
        self.head.set_label_vectors(vectors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


__all__ = ["MLDecoder", "MLDecoderHead", "DecoderLayer", "official_layouts", "TResNetLayout"]
