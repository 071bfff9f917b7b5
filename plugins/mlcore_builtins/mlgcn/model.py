"""ML-GCN (Chen et al., CVPR 2019): image features from a backbone, label classifiers
from a two-layer GCN over the label word vectors — the official computation
(Megvii-Nanjing/ML-GCN ``models.py``/``util.py``).

Parameter names follow the official ``GCNResnet``: ``gc1.weight``, ``gc2.weight`` (stored
(in, out)), and ``A`` (the re-weighted label graph, C×C, never trained: a buffer here, a
Parameter kept out of the optimizer there). Official checkpoints load through
:func:`official_layout`, which renames the official ``features.{0,1,4,5,6,7}`` Sequential
to the backbone's ResNet names and lets the files lack the BatchNorm ``num_batches_tracked``
counters that torch 0.3 did not write.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlcore import MlcoreError, WeightLayout


def label_graph(probabilities: np.ndarray, t: float = 0.4, p: float = 0.25) -> torch.Tensor:
    """The official ``gen_A`` (util.py) from the train split's P(j|i).

    ``probabilities``: C×C, row i conditioned on label i
    (:meth:`mlcore.LabelInfo.conditional_probabilities`). The diagonal is zeroed (the
    official co-occurrence counts have a zero diagonal); entries are binarized (``< t`` →
    0, ``>= t`` → 1); each column is scaled by ``p / (column sum + 1e-6)``; the identity is
    added. Computed in float64 as the official numpy code, returned as float32. A label
    never seen in training has a zero row and column (the official code divides 0 by 0
    there and gets NaN), so its row of A is the identity's.
    """
    a = np.array(probabilities, dtype=np.float64, copy=True)
    np.fill_diagonal(a, 0)
    a = (a >= t).astype(np.float64)
    a = a * p / (a.sum(0, keepdims=True) + 1e-6)
    a = a + np.identity(a.shape[0])
    return torch.from_numpy(a).float()


def normalized_adjacency(a: torch.Tensor) -> torch.Tensor:
    """The official ``gen_adj``: ``(A·D)ᵀ·D = D·Aᵀ·D`` with ``D = diag(rowsum(A)^-½)``,
    detached — element-wise ``Â[i, j] = d_i · A[j, i] · d_j``, in A's dtype (float32 also
    under autocast)."""
    a = a.detach()
    d = a.sum(1).pow(-0.5)
    return (a * d[None, :]).t() * d[None, :]


class GraphConvolution(nn.Module):
    """``adj @ (x @ weight)``, no bias (the official ``GraphConvolution(bias=False)``);
    ``weight`` is (in, out), initialized U(±1/√out)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        bound = 1.0 / math.sqrt(out_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return torch.matmul(adj, torch.matmul(x, self.weight))

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}"


#: the official ``features`` Sequential: its indices and the torchvision ResNet names
#: (2 and 3 are ReLU and max pool: no weights)
OFFICIAL_FEATURES = (("0", "conv1"), ("1", "bn1"), ("4", "layer1"), ("5", "layer2"), ("6", "layer3"),
                     ("7", "layer4"))


def official_layout(model: nn.Module) -> WeightLayout | None:
    """The official layout for ``model``, whose backbone holds a torchvision-named ResNet
    (``conv1``, ``bn1``, ``layer1``…``layer4``, at its top or below one prefix such as timm's
    ``model.``); None for other backbones (the official checkpoints are ResNet-101s)."""
    names = {n for n, _ in model.backbone.named_modules()}
    prefix = next((n[:-len("conv1")] for n in sorted(names, key=len) if n.endswith("conv1")
                   and all(n[:-len("conv1")] + s in names for _, s in OFFICIAL_FEATURES)), None)
    if prefix is None:
        return None
    # torch 0.3 wrote the released files before BatchNorm counted its batches: the model
    # keeps its own counters (0), what torch's BatchNorm does with a state dict of that
    # age; they only matter for momentum=None BatchNorm, which no ResNet uses
    return WeightLayout("official ML-GCN", detect="features.",
                        rename=tuple((f"features.{i}.", f"backbone.{prefix}{s}.") for i, s in OFFICIAL_FEATURES),
                        optional=(".num_batches_tracked",))


class MLGCN(nn.Module):
    """``forward(images) -> logits [B, C]``.

    backbone: any module with ``out_dim`` returning a feature map; ``words``: [C, d] label
    word vectors (a non-persistent buffer: they come from the config, never train);
    ``graph``: [C, C] the re-weighted label graph :func:`label_graph` (the persistent
    buffer ``A``: saved in checkpoints, replaced by a loaded file's ``A``, never trained).

    logits = maxpool(backbone(x)) · Hᵀ, H = gc2(LeakyReLU₀.₂(gc1(words, Â)), Â),
    Â = :func:`normalized_adjacency` (A), recomputed every forward as the official does.
    The official ``MaxPool2d(14, 14)`` is the global max pool at 448 px only; this is the
    global max pool at every size.
    """

    def __init__(self, backbone: nn.Module, words: torch.Tensor, graph: torch.Tensor, *,
                 hidden: int = 1024):
        super().__init__()
        num_classes, word_dim = words.shape
        if tuple(graph.shape) != (num_classes, num_classes):
            raise MlcoreError(f"ML-GCN: the label graph is {tuple(graph.shape)}, the word vectors "
                              f"{num_classes}×{word_dim}")
        self.backbone = backbone
        self.gc1 = GraphConvolution(word_dim, hidden)
        self.gc2 = GraphConvolution(hidden, backbone.out_dim)
        self.relu = nn.LeakyReLU(0.2)
        self.register_buffer("A", graph.float().clone())
        self.register_buffer("words", words.float().clone(), persistent=False)
        #: the tensors with one entry per label, and their label axes (``weights_classes``):
        #: a file's graph, rows and columns; the word vectors come from the config
        self.class_axes = {"A": (0, 1)}
        layout = official_layout(self)
        self.weight_layouts = (layout,) if layout is not None else ()

    def weights_loaded(self, layout: WeightLayout | None) -> None:
        """A loaded ``A`` must give a finite Â: no NaN (the official ``gen_A`` writes NaN
        for a label never seen) and positive row sums."""
        a = self.A
        if not torch.isfinite(a).all() or not (a.sum(1) > 0).all():
            raise MlcoreError("the loaded label graph 'A' has NaN/infinite entries or rows that do not "
                              "sum to a positive number (was it made with a label never seen in training?)")

    def label_classifiers(self) -> torch.Tensor:
        """H [C, out_dim]: one classifier per label, from the word vectors over the graph."""
        adj = normalized_adjacency(self.A)
        h = self.relu(self.gc1(self.words, adj))
        return self.gc2(h, adj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = F.adaptive_max_pool2d(self.backbone(x), 1).flatten(1)  # B×D
        return torch.matmul(feature, self.label_classifiers().t())
