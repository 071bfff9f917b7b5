"""SSGRL's semantic decoupling without its B×C×P×1024 intermediate.

The official module scores every (label c, position p) as
``fc_a(fc_3(tanh(fc_1(f_p) ⊙ fc_2(w_c))))`` and materializes the tanh tensor for all
labels and positions at once (3 GB at 80 labels, 17 GB at 500 for a batch of 8 on a 9×9
map). Two facts make that unnecessary:

* ``fc_a ∘ fc_3`` is a linear map after a linear map: one vector ``v = fc_3ᵀ fc_a`` does
  the same, and the biases only add the same constant to every position's score, which
  the softmax over positions cancels;
* ``Σ_k v_k tanh(a_pk w_ck)`` can be computed a few labels at a time, and recomputed in
  backward instead of stored (:class:`TanhProductScore`).

The attention-weighted sum of features is then one batched matrix product.
"""
from __future__ import annotations

import torch

#: elements of one chunk of the (batch, labels, positions, hidden) tanh tensor
CHUNK_ELEMENTS = 1 << 23


def _chunk(b: int, p: int, k: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, b * p * k))


class TanhProductScore(torch.autograd.Function):
    """``s[b,c,p] = Σ_k v[k] · tanh(a[b,p,k] · w[c,k])``, chunked over labels, with the
    tanh recomputed in backward rather than kept."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, p, k = a.shape
        c = w.shape[0]
        step = _chunk(b, p, k)
        out = a.new_empty(b, c, p)
        for c0 in range(0, c, step):
            t = torch.tanh(a.unsqueeze(1) * w[c0:c0 + step, None, :])  # B×c×P×K
            out[:, c0:c0 + step] = torch.matmul(t, v)
        ctx.save_for_backward(a, w, v)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, w, v = ctx.saved_tensors
        b, p, k = a.shape
        c = w.shape[0]
        step = _chunk(b, p, k)
        grad_a = torch.zeros_like(a)
        grad_w = torch.empty_like(w)
        grad_v = torch.zeros_like(v)
        for c0 in range(0, c, step):
            wc = w[c0:c0 + step]
            g = grad[:, c0:c0 + step]  # B×c×P
            t = torch.tanh(a.unsqueeze(1) * wc[:, None, :])  # B×c×P×K, recomputed
            grad_v += g.reshape(1, -1).matmul(t.reshape(-1, k)).squeeze(0)
            e = t.mul_(t).neg_().add_(1).mul_(g.unsqueeze(-1))  # (1 - t²)·g, in place; v applied below
            grad_a += (e * wc[:, None, :]).sum(1)
            grad_w[c0:c0 + step] = (e * a.unsqueeze(1)).sum((0, 2))
        return grad_a.mul_(v), grad_w.mul_(v), grad_v


def attention_scores(features: torch.Tensor, label_hidden: torch.Tensor, fc_1: torch.nn.Linear,
                     fc_3: torch.nn.Linear, fc_a: torch.nn.Linear) -> torch.Tensor:
    """Scores ``[B, C, P]`` up to a per-(image, label) constant (which softmax ignores).

    ``features``: ``[B, P, D]``; ``label_hidden``: ``fc_2(word vectors)``, ``[C, 1024]``.
    """
    a = fc_1(features)  # B×P×K
    v = (fc_a.weight @ fc_3.weight).squeeze(0)  # K
    if a.dtype != label_hidden.dtype:  # under autocast the linear layers may differ
        label_hidden = label_hidden.to(a.dtype)
        v = v.to(a.dtype)
    if getattr(torch.compiler, "is_exporting", bool)() or torch.jit.is_tracing():  # (not in torch < 2.5)
        return _exported_scores(a, label_hidden, v)
    return TanhProductScore.apply(a, label_hidden, v)


def _exported_scores(a: torch.Tensor, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The forward of :class:`TanhProductScore` for ``mlcore export`` (torch.export,
    TorchScript tracing), which need neither its Python ``autograd.Function`` nor its
    backward: label chunks sized for one image, so that no size depends on the batch and
    the batch dimension stays symbolic; chunks concatenated, not written into a buffer."""
    _, p, k = a.shape
    step = _chunk(1, p, k)
    return torch.cat([torch.matmul(torch.tanh(a.unsqueeze(1) * w[c0:c0 + step, None, :]), v)  # B×c×P
                      for c0 in range(0, w.shape[0], step)], dim=1)
