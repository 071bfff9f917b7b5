"""SSGRL (Chen et al., ICCV 2019): semantic decoupling, a gated graph network over the
labels, and an element-wise classifier — the published computation, computed lean.

Parameter names follow the official code (``word_semantic.fc_1`` …, ``graph_net.fc_eq3_w``
…, ``fc_output``, ``classifiers``), so official and seed checkpoints load with only the
backbone's prefix renamed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlcore import LabelInfo, WeightLayout

from .attention import attention_scores


class SemanticDecoupling(nn.Module):
    """Label-specific features: attention of each label's word vector over positions."""

    def __init__(self, image_dim: int, word_dim: int, hidden: int = 1024):
        super().__init__()
        self.fc_1 = nn.Linear(image_dim, hidden, bias=False)
        self.fc_2 = nn.Linear(word_dim, hidden, bias=False)
        self.fc_3 = nn.Linear(hidden, hidden)
        self.fc_a = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """``features`` [B, P, D], ``words`` [C, word_dim] → label features [B, C, D]."""
        scores = attention_scores(features, self.fc_2(words), self.fc_1, self.fc_3, self.fc_a)
        weights = torch.softmax(scores.float(), dim=2).to(features.dtype)  # over positions
        return torch.bmm(weights, features)


class GGNN(nn.Module):
    """Gated graph neural network over the labels (``time_step`` propagation steps).

    ``reset_gate``: ``paper`` computes r = σ(W⁴a + U⁴h) as in the GGNN equations; the
    ``official`` code used U³ there (its ``fc_eq4_u`` is never used) — needed to reproduce
    its checkpoints.
    """

    def __init__(self, dim: int, time_step: int, reset_gate: str = "paper"):
        super().__init__()
        self.time_step = time_step
        self.reset_gate = reset_gate
        self.fc_eq3_w = nn.Linear(2 * dim, dim)
        self.fc_eq3_u = nn.Linear(dim, dim)
        self.fc_eq4_w = nn.Linear(2 * dim, dim)
        self.fc_eq4_u = nn.Linear(dim, dim)
        self.fc_eq5_w = nn.Linear(2 * dim, dim)
        self.fc_eq5_u = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, in_matrix: torch.Tensor, out_matrix: torch.Tensor) -> torch.Tensor:
        """``h`` [B, C, D]; ``in_matrix`` [C, C] (A), ``out_matrix`` [C, C] (Aᵀ)."""
        in_m, out_m = in_matrix.to(h.dtype), out_matrix.to(h.dtype)
        reset_u = self.fc_eq4_u if self.reset_gate == "paper" else self.fc_eq3_u
        for _ in range(self.time_step):
            av = torch.cat((torch.matmul(in_m, h), torch.matmul(out_m, h)), dim=2)
            z = torch.sigmoid(self.fc_eq3_w(av) + self.fc_eq3_u(h))
            r = torch.sigmoid(self.fc_eq4_w(av) + reset_u(h))
            candidate = torch.tanh(self.fc_eq5_w(av) + self.fc_eq5_u(r * h))
            h = (1 - z) * h + z * candidate
        return h


class ElementWiseLayer(nn.Module):
    """One weight vector and one bias per label: ``logit_c = w_c · x_c + b_c``."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.empty(num_classes))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(2) + self.bias


def adjacency(info: LabelInfo) -> torch.Tensor:
    """SSGRL's label graph: A[i, j] = P(j | i) from the train split
    (:meth:`LabelInfo.conditional_probabilities`) with a zero diagonal; a label never
    seen has a zero row."""
    a = torch.from_numpy(info.conditional_probabilities())
    a.fill_diagonal_(0)
    return a.float()


#: the official code's and the seed's checkpoints: the backbone is ``resnet_101.*``, all
#: else has mlcore's names; they were trained with the official reset gate
OFFICIAL_LAYOUT = WeightLayout("official SSGRL", detect="resnet_101.", rename=(("resnet_101.", "backbone."),))


class SSGRL(nn.Module):
    """``forward(images) -> logits [B, C]``.

    backbone: any module with ``out_dim`` returning a feature map; ``words``: [C, word_dim]
    label vectors; ``adj``: [C, C] in-matrix. ``feature_pool``: the official 2×2 average
    pool (stride 2) on the backbone's map, skipped when the map is smaller; 1 turns it off.
    Freezing the backbone is the builder's (``mlcore.create_backbone(..., freeze=...)``).
    Weight files of the official code and of the seed load as they are
    (:data:`OFFICIAL_LAYOUT`, through ``mlcore.load_weights``).
    """

    weight_layouts = (OFFICIAL_LAYOUT,)

    def __init__(self, backbone: nn.Module, words: torch.Tensor, adj: torch.Tensor, *, time_step: int = 3,
                 hidden: int = 1024, output_dim: int = 2048, feature_pool: int = 2,
                 reset_gate: str = "paper"):
        super().__init__()
        num_classes, word_dim = words.shape
        dim = backbone.out_dim
        self.backbone = backbone
        self.feature_pool = feature_pool
        self.word_semantic = SemanticDecoupling(dim, word_dim, hidden)
        self.graph_net = GGNN(dim, time_step, reset_gate)
        self.fc_output = nn.Linear(2 * dim, output_dim)
        self.classifiers = ElementWiseLayer(num_classes, output_dim)
        #: the tensors with one entry per label, and their label axes (``weights_classes``);
        #: the word vectors and the graph come from the config, in the dataset's order
        self.class_axes = {"classifiers.weight": (0,), "classifiers.bias": (0,)}
        # derived from the config (label vectors, train-split statistics): not saved
        self.register_buffer("words", words.float(), persistent=False)
        self.register_buffer("in_matrix", adj.float(), persistent=False)
        self.register_buffer("out_matrix", adj.float().t().contiguous(), persistent=False)
        # fc_3's and fc_a's biases shift every position's score alike, which the softmax
        # cancels: they can never receive a gradient, so they do not train (and DDP need
        # not look for unused parameters)
        self.word_semantic.fc_3.bias.requires_grad_(False)
        self.word_semantic.fc_a.bias.requires_grad_(False)
        self.reset_gate = reset_gate

    @property
    def reset_gate(self) -> str:
        return self.graph_net.reset_gate

    @reset_gate.setter
    def reset_gate(self, value: str) -> None:
        """The official variant never uses ``fc_eq4_u``: it stops training then."""
        self.graph_net.reset_gate = value
        self.graph_net.fc_eq4_u.requires_grad_(value == "paper")

    def weights_loaded(self, layout: WeightLayout | None) -> None:
        """Files of the official layout were trained with the official reset gate: use it."""
        if layout == OFFICIAL_LAYOUT:
            self.reset_gate = "official"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone(x)
        if self.feature_pool > 1 and min(fmap.shape[-2:]) >= self.feature_pool:
            fmap = F.avg_pool2d(fmap, self.feature_pool, stride=self.feature_pool)
        features = fmap.flatten(2).transpose(1, 2)  # B×P×D
        h0 = self.word_semantic(features, self.words)  # B×C×D
        h = self.graph_net(h0, self.in_matrix, self.out_matrix)
        out = torch.tanh(self.fc_output(torch.cat((h, h0), dim=2)))
        return self.classifiers(out)
