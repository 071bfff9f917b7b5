"""Query2Label (Liu et al., 2021, "Query2Label: A Simple Transformer Way to Multi-Label
Classification"): what the official code (github SlongLiu/query2labels, ``lib/models/``)
computes, with the released models' settings.

For a feature map x [B, d, h, w] of the backbone (d its ``out_dim``: the official has no
input projection, so the transformer's width is the trunk's) and pos [h·w, d] the DETR sine
position encoding of that map (:func:`sine_position_encoding`):

* encoder layers (post-norm): ``x ← LN₁(x + MHA(q = k = x + pos, v = x))``,
  ``x ← LN₂(x + W₂·relu(W₁·x))``; their output is the memory m;
* decoder layers without self-attention: the target t starts at zeros and the learnable
  ``query_embed`` Q [C, d] is added to the queries only:
  ``t ← LN₂(t + MHA(q = t + Q, k = m + pos, v = m))``, ``t ← LN₃(t + W₂·relu(W₁·t))``;
  the last layer's output goes through the decoder's final LayerNorm;
* ``GroupWiseLinear``: ``logit_c = ⟨W_c, t_c⟩ + b_c``.

Parameter names mirror the official module tree (``transformer.encoder.layers.<i>.
self_attn.in_proj_weight``, ``…decoder.layers.<i>.multihead_attn.*``, ``linear1``,
``linear2``, ``norm2``, ``norm3``, ``transformer.decoder.norm``, ``query_embed.weight``,
``fc.W``, ``fc.b``; a decoder layer holds no ``self_attn``/``norm1``, which the official
build deletes), so an official checkpoint loads by renaming the trunk's prefix only
(:func:`official_layout`). The attention keeps ``nn.MultiheadAttention``'s packed
``in_proj_weight``/``in_proj_bias`` and ``out_proj`` but runs through
``F.scaled_dot_product_attention`` and shares work the official recomputes: q and k of an
encoder layer come from one product (they have the same input), and the first decoder
layer's queries (zeros + Q) are projected once for the whole batch. In float32, where it
needs fewer multiply-adds (few labels, many positions), the cross-attention moves the key
and value projections to the query side (:meth:`DecoderLayer.cross_attend_reassociated`),
exactly equal in exact arithmetic.

The trunk trains as the official's does: every BatchNorm is frozen (torchvision's
``FrozenBatchNorm2d``: statistics and affine as buffers, the same in training and
evaluation), and a torchvision-named ResNet's ``conv1`` and ``layer1`` never train
(``requires_grad=False``), so an optimizer, an EMA or a checkpoint all see the same thing.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlcore import MlcoreError, WeightLayout

#: the ResNet stages the official ``BackboneBase`` leaves frozen: every parameter whose name
#: holds none of layer2/3/4 (BatchNorms are frozen separately, wherever they are)
FROZEN_STAGES = ("conv1", "layer1")
#: the torchvision ResNet names that identify a trunk the official checkpoints fit
RESNET_NAMES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


def sine_position_encoding(h: int, w: int, dim: int, *, temperature: float = 10000.0,
                           scale: float = 2 * math.pi, device: Any = None) -> torch.Tensor:
    """DETR's normalized sine encoding [dim, h, w] of an h×w map without padding (float32).

    ``dim/2`` channels encode the row, then ``dim/2`` the column (the official [y, x]
    order); a coordinate ``c`` (1-based, divided by its last value + 1e-6 and scaled by
    2π) gives channel ``2j`` ``sin(c / T^(2j/(dim/2)))`` and ``2j+1`` ``cos(c / T^(2j/(dim/2)))``.
    Computed for the map at hand: the official stores it for one image size (its
    ``backbone.1.pe`` buffer) and ignores the real input size.
    """
    if dim % 4:
        raise MlcoreError(f"the sine position encoding needs a width divisible by 4, got {dim}")
    feats = dim // 2
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + 1e-6) * scale
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + 1e-6) * scale
    dim_t = torch.arange(feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / feats)
    py, px = y[:, None] / dim_t, x[:, None] / dim_t  # [h, feats], [w, feats]
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
    return torch.cat((py[:, None, :].expand(h, w, feats), px[None, :, :].expand(h, w, feats)), dim=2).permute(2, 0, 1)


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters (packed
    ``in_proj_weight`` [3d, d], ``in_proj_bias`` [3d], ``out_proj``) and its initialization,
    so the official keys load as they are; batch-first. Projections are applied by the
    layers (which know which inputs coincide, :meth:`weights`); :meth:`attend` does the rest."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def weights(self, *sizes: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """The packed projection split into consecutive blocks of ``sizes`` rows (in units of
        d: q 1, k 1, v 1; ``(2, 1)`` is q and k together, then v), as (weight, bias) pairs.
        One split per forward: its backward writes the blocks' gradients into the packed
        gradient at once, where indexing each block would zero-fill and add a whole-size
        gradient per block."""
        rows = [n * self.dim for n in sizes]
        return tuple(zip(self.in_proj_weight.split(rows), self.in_proj_bias.split(rows)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ/√(d/heads)) · v per head, attention dropout in training, then
        ``out_proj``. q [B, Lq, d], k and v [B, Lk, d] (already projected)."""
        b, lq, _ = q.shape
        hd = self.dim // self.heads
        q = q.view(b, lq, self.heads, hd).transpose(1, 2)
        k = k.view(b, -1, self.heads, hd).transpose(1, 2)
        v = v.view(b, -1, self.heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, self.dim))


class EncoderLayer(nn.Module):
    """The official post-norm ``TransformerEncoderLayer``: self-attention with the position
    added to queries and keys (not values), then a ReLU feed-forward."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout)
        self.linear1, self.linear2 = nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        att = self.self_attn
        qk, v = att.weights(2, 1)
        q, k = F.linear(src + pos, *qk).chunk(2, dim=-1)  # q and k share their input: one product
        src = self.norm1(src + self.dropout(att.attend(q, k, F.linear(src, *v))))
        return self.norm2(src + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(src))))))


def reassociation_pays(batch: int, query_batch: int, queries: int, keys: int, dim: int, heads: int) -> bool:
    """Whether :meth:`DecoderLayer.cross_attend_reassociated` takes fewer multiply-adds than
    projecting the memory into keys and values: ``2·B·P·d²`` against
    ``(B_q + B)·C·d² + 2·heads·B·C·P·d`` (B_q: 1 when the queries are the same for every image).
    At 448 px (P = 196), 80 classes, d = 2048, 4 heads, batch 2: 3.3G against 1.5G (first
    layer) or 1.9G per layer."""
    standard = 2 * batch * keys * dim * dim
    moved = (query_batch + batch) * queries * dim * dim + 2 * heads * batch * queries * keys * dim
    return moved < standard


class DecoderLayer(nn.Module):
    """The official post-norm ``TransformerDecoderLayer`` as built for the released models:
    no self-attention (so no ``self_attn``/``norm1``), cross-attention of the label queries
    into the memory, a ReLU feed-forward.

    ``reassociate``: None (default) computes the cross-attention the cheaper of two exact
    ways: as written, or with the key and value projections moved to the query side
    (:meth:`cross_attend_reassociated`) — with few label queries and many positions the
    latter avoids projecting every position of the memory. It is taken when it needs fewer
    multiply-adds (:func:`reassociation_pays`) and runs in float32, where those dominate;
    under bf16 autocast the matrix products are cheap and its extra, oddly shaped ones made
    the R101-448 head 10-15% slower on an H200, so the layer computes as written there.
    True/False forces one way."""

    reassociate: bool | None = None

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.multihead_attn = Attention(dim, heads, dropout)
        self.linear1, self.linear2 = nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)
        self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def cross_attend_reassociated(self, q: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
                                  k_proj: tuple[torch.Tensor, torch.Tensor],
                                  v_proj: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The cross-attention with the projections moved, exactly equal in exact arithmetic.

        Per head h (Wk_h, Wv_h: its rows of the key and value projections, hd = d/heads):
        ``q_h·(Wk_h·x_p + bk_h) = (Wk_hᵀ·q_h)·x_p + q_h·bk_h``, and the second term is the same
        for every position p, which the softmax ignores; with a = the (dropped-out) attention
        weights, ``Σ_p a_p·(Wv_h·m_p + bv_h) = Wv_h·(Σ_p a_p·m_p) + bv_h·Σ_p a_p``. q [B_q, C, d]
        (B_q 1 or B), memory [B, P, d], keys = memory + pos [B, P, d], ``k_proj``/``v_proj`` the
        (weight, bias) of the key and value projections → [B, C, d] after ``out_proj``."""
        att = self.multihead_attn
        d, heads = att.dim, att.heads
        hd = d // heads
        b, cq = memory.shape[0], q.shape[1]
        wk, wv = k_proj[0].view(heads, hd, d), v_proj[0].view(heads, hd, d)
        qk = torch.einsum("bchk,hkd->bhcd", q.view(q.shape[0], cq, heads, hd), wk)  # [B_q, h, C, d]
        # positions-major [B, P, h·C]: with queries shared by the batch (B_q 1) one product over
        # all B·P positions, neither operand copied to broadcast it
        logits = torch.matmul(keys, qk.reshape(q.shape[0], heads * cq, d).transpose(1, 2))
        weights = torch.softmax(logits / math.sqrt(hd), dim=1).transpose(1, 2)  # [B, h·C, P]
        weights = F.dropout(weights, att.dropout, self.training)
        pooled = torch.matmul(weights, memory).view(b, heads, cq, d)  # Σ_p a_p·m_p per head
        out = torch.einsum("bhcd,hkd->bchk", pooled, wv)  # [B, C, h, hd]
        bias = v_proj[1].view(heads, hd)
        out = out + weights.view(b, heads, cq, -1).sum(-1).transpose(1, 2)[..., None] * bias
        return att.out_proj(out.reshape(b, cq, d))

    def forward(self, tgt: torch.Tensor | None, memory: torch.Tensor, keys: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        """``tgt`` [B, C, d], or None for the zeros the first layer starts from (whose
        queries, ``query_pos`` alone, are projected once for the whole batch); ``keys`` =
        memory + pos, computed once for all the layers."""
        att = self.multihead_attn
        b, p, d = memory.shape
        query = query_pos[None] if tgt is None else tgt + query_pos
        qw, kw, vw = att.weights(1, 1, 1)
        q = F.linear(query, *qw)
        moved = self.reassociate
        if moved is None:  # fewer multiply-adds pay where they dominate: float32, not under autocast
            moved = (q.dtype == torch.float32 and not torch.is_autocast_enabled(memory.device.type)
                     and reassociation_pays(b, q.shape[0], q.shape[1], p, d, att.heads))
        if moved:
            out = self.cross_attend_reassociated(q, memory, keys, kw, vw)
        else:
            out = att.attend(q.expand(b, -1, -1), F.linear(keys, *kw), F.linear(memory, *vw))
        out = self.dropout(out)
        tgt = self.norm2(out if tgt is None else tgt + out)
        return self.norm3(tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class Encoder(nn.Module):
    def __init__(self, layers: int, *args: Any):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(*args) for _ in range(layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class Decoder(nn.Module):
    def __init__(self, layers: int, dim: int, *args: Any):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, *args) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        tgt, keys = None, memory + pos  # every layer's keys: one sum, saved once for the backward
        for layer in self.layers:
            tgt = layer(tgt, memory, keys, query_pos)
        return self.norm(tgt)


class Transformer(nn.Module):
    """The official ``Transformer``'s encoder and decoder (its parameters, xavier-initialized
    as the official ``_reset_parameters`` does), on batch-first sequences."""

    def __init__(self, dim: int, heads: int, ff_dim: int, enc_layers: int, dec_layers: int, dropout: float):
        super().__init__()
        self.encoder = Encoder(enc_layers, dim, heads, ff_dim, dropout)
        self.decoder = Decoder(dec_layers, dim, heads, ff_dim, dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, query_embed: torch.Tensor) -> torch.Tensor:
        """src [B, P, d], pos [1, P, d], query_embed [C, d] → the decoded queries [B, C, d]."""
        return self.decoder(self.encoder(src, pos), pos, query_embed)


class GroupWiseLinear(nn.Module):
    """One linear classifier per label on that label's decoded query: ``W`` [1, C, d],
    ``b`` [1, C] (the official shapes), both U(±1/√d) as the official initializes them."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.W = nn.Parameter(torch.empty(1, num_classes, dim).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(1, num_classes).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.W * x).sum(-1) + self.b


def _keep_in_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of a BatchNorm subclass that cannot be swapped for a frozen one
    (e.g. timm's BatchNormAct2d, which also holds its activation): never update its stats."""
    module.training = False


def freeze_trunk(backbone: nn.Module) -> str | None:
    """Freeze ``backbone`` as the official Query2Label trains its ResNet; returns the
    torchvision ResNet prefix found (see :func:`resnet_prefix`), or None.

    Every plain ``BatchNorm2d`` becomes torchvision's ``FrozenBatchNorm2d`` with the same
    statistics, affine and eps (the official builds its ResNet with DETR's; same arithmetic,
    and neither has a ``num_batches_tracked``, so the official keys match); other BatchNorm
    classes keep their module, their parameters stop training and they always run in eval
    mode. In a ResNet, ``conv1`` and ``layer1`` stop training too (``requires_grad=False``).
    """
    from torch.nn.modules.batchnorm import _BatchNorm
    from torchvision.ops import FrozenBatchNorm2d

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if type(child) in (nn.BatchNorm2d, nn.SyncBatchNorm) and child.affine and child.track_running_stats:
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key).detach())
                setattr(parent, name, frozen.to(child.weight.device))
            elif isinstance(child, _BatchNorm):
                for p in child.parameters():
                    p.requires_grad_(False)
                child.eval()
                child.register_forward_pre_hook(_keep_in_eval)
            else:
                swap(child)

    swap(backbone)
    prefix = resnet_prefix(backbone)
    if prefix is not None:
        for stage in FROZEN_STAGES:
            for p in backbone.get_submodule(prefix + stage).parameters():
                p.requires_grad_(False)
    return prefix


def resnet_prefix(backbone: nn.Module) -> str | None:
    """The prefix under which ``backbone`` holds a torchvision-named ResNet (``""`` for
    mlcore's ResNets, ``"model."`` for timm's), or None."""
    names = {n for n, _ in backbone.named_modules()}
    return next((n[:-len("conv1")] for n in sorted(names, key=len) if n.endswith("conv1")
                 and all(n[:-len("conv1")] + s in names for s in RESNET_NAMES)), None)


def official_layout(prefix: str) -> WeightLayout:
    """The official checkpoints' keys read as the model's: the trunk ``backbone.0.body.*``
    moves under the backbone's ResNet ``prefix``; the stored position encoding
    ``backbone.1.pe`` (computed for one image size) is dropped, whatever its size; the
    transformer, ``query_embed`` and ``fc`` keep their names."""
    return WeightLayout("official Query2Label", detect="backbone.0.body.",
                        rename=(("backbone.0.body.", f"backbone.{prefix}"),), drop=("backbone.1.",))


class Query2Label(nn.Module):
    """``forward(images) -> logits [B, num_classes]``.

    ``backbone``: any module with ``out_dim`` returning a feature map; its BatchNorms (and a
    ResNet's conv1/layer1) are frozen here, as in the official training (:func:`freeze_trunk`).
    ``hidden``: the transformer width, which must be the backbone's ``out_dim`` (no input
    projection, as in the released models; None takes it). Official checkpoints load through
    ``mlcore.load_weights`` when the backbone is a torchvision-named ResNet.
    """

    #: the state-dict entries indexed by class, and along which axes (for loading weights
    #: trained on another label set: ``mlcore.load_weights(classes=…, file_classes=…)``)
    class_axes: dict[str, tuple[int, ...]] = {"query_embed.weight": (0,), "fc.W": (1,), "fc.b": (1,)}

    def __init__(self, backbone: nn.Module, num_classes: int, *, hidden: int | None = None, heads: int = 4,
                 ff_dim: int = 8192, enc_layers: int = 1, dec_layers: int = 2, dropout: float = 0.1):
        super().__init__()
        dim = int(backbone.out_dim)
        if hidden is not None and hidden != dim:
            raise MlcoreError(f"model 'q2l': hidden_dim {hidden} differs from the backbone's out_dim {dim}; "
                              f"Query2Label has no input projection (its width is the trunk's): leave "
                              f"hidden_dim unset or set it to {dim}")
        if dim % heads or dim % 4:
            raise MlcoreError(f"model 'q2l': the backbone's out_dim {dim} (the transformer width) must be "
                              f"divisible by heads ({heads}) and by 4 (the sine position encoding)")
        if dec_layers < 1:
            raise MlcoreError(f"model 'q2l': dec_layers must be >= 1, got {dec_layers}")
        self.backbone = backbone
        self.transformer = Transformer(dim, heads, ff_dim, enc_layers, dec_layers, dropout)
        self.query_embed = nn.Embedding(num_classes, dim)
        self.fc = GroupWiseLinear(num_classes, dim)
        prefix = freeze_trunk(backbone)
        self.weight_layouts = (official_layout(prefix),) if prefix is not None else ()

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """The logits of a feature map [B, d, h, w]: everything after the trunk."""
        b, d, h, w = fmap.shape
        pos = sine_position_encoding(h, w, d, device=fmap.device).to(fmap.dtype).flatten(1).t()[None]
        hs = self.transformer(fmap.flatten(2).transpose(1, 2), pos, self.query_embed.weight)
        return self.fc(hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def parameter_count(backbone_params: int, dim: int, num_classes: int, *, ff_dim: int = 8192,
                    enc_layers: int = 1, dec_layers: int = 2) -> int:
    """The number of parameters of :class:`Query2Label` (the frozen BatchNorms are buffers,
    so the trunk counts without them): ``backbone_params`` (its convolutions), each layer's
    attention (4d² + 4d), feed-forward (2·d·ff + ff + d) and LayerNorms (2 per layer, 2d
    each), the decoder's final LayerNorm, ``query_embed`` (C·d) and ``fc`` (C·d + C).
    About 194M for a ResNet-101 at 80 classes."""
    layer = 4 * dim * dim + 4 * dim + 2 * dim * ff_dim + ff_dim + dim + 4 * dim
    return backbone_params + (enc_layers + dec_layers) * layer + 2 * dim + 2 * num_classes * dim + num_classes
