"""CSRA (Zhu & Wu, ICCV 2021): class-specific residual attention heads on a feature map.

Per head with temperature T and weight λ, for a feature map x [B, D, h, w]:

* ``score[b, c, p] = (w_c · x[b, :, p]) / ‖w_c‖`` — a 1×1 convolution without bias,
  each class's score divided by the norm of that class's weight over the input channels
  (computed at every forward, as the official code does, so the gradient flows through
  the norm too);
* ``base = mean_p score``; ``att = Σ_p softmax_p(T·score) · score``, or ``max_p score``
  when T = 99 (the official sentinel for T → ∞);
* the head's logit is ``base + λ·att``; the model's is the sum over its heads.

Parameter names: ``backbone.*`` and ``classifier.<i>.head.weight`` (C×D×1×1), so an
official checkpoint (the ResNet's keys at the top level, ``classifier.multi_head.<i>.
head.weight``) loads with prefix renames only (:data:`OFFICIAL_LAYOUT`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlcore import WeightLayout

#: the official code's temperature sentinel for max pooling over positions
MAX_POOL_T = 99

#: official CSRA files: ``ResNet_CSRA.state_dict()`` — torchvision's ResNet keys at the
#: top level (its ``fc`` is an empty ``nn.Sequential``, so none) and the heads as
#: ``classifier.multi_head.<i>.head.weight``; DataParallel's ``module.`` is dropped first.
#: A file without BatchNorm ``num_batches_tracked`` keys (written by a torch before 0.4.1, or
#: stripped) loads as the official ``load_state_dict`` loads it: the model keeps its counters
OFFICIAL_LAYOUT = WeightLayout(
    "official CSRA", detect="classifier.multi_head.",
    rename=(("classifier.multi_head.", "classifier."),
            *((f"{m}.", f"backbone.{m}.") for m in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"))),
    optional=(".num_batches_tracked",))


def head_logits(score: torch.Tensor, temperature: float, lam: float) -> torch.Tensor:
    """One head's logits [B, C] from its normalized scores [B, C, P] (P positions)."""
    base = score.mean(dim=2)
    if temperature == MAX_POOL_T:
        att = score.amax(dim=2)
    else:
        att = (score * torch.softmax(score * temperature, dim=2)).sum(dim=2)
    return base + lam * att


class CSRAHead(nn.Module):
    """One CSRA head: ``head`` is the bias-free 1×1 convolution (the official name)."""

    def __init__(self, in_dim: int, num_classes: int, temperature: float, lam: float):
        super().__init__()
        self.temperature = temperature
        self.lam = lam
        self.head = nn.Conv2d(in_dim, num_classes, 1, bias=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized class scores [B, C, P] of a feature map [B, D, h, w] (float32)."""
        norm = self.head.weight.float().flatten(1).norm(dim=1)  # ‖w_c‖ over the input channels
        return self.head(x).flatten(2).float() / norm[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return head_logits(self.scores(x), self.temperature, self.lam)


class MultiHead(nn.ModuleList):
    """The heads of one model; ``forward`` sums their logits. The heads' convolutions run
    as one (their weights stacked), which is the same arithmetic as one at a time."""

    def __init__(self, in_dim: int, num_classes: int, temperatures: Sequence[float], lam: float):
        super().__init__(CSRAHead(in_dim, num_classes, t, lam) for t in temperatures)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([h.head.weight for h in self], dim=0)  # [H·C, D, 1, 1]
        norm = weight.float().flatten(1).norm(dim=1)
        score = F.conv2d(x, weight)
        score = score.flatten(2).float() / norm[:, None]  # [B, H·C, P]
        logits = None
        for i, h in enumerate(self):
            own = score[:, i * self.num_classes:(i + 1) * self.num_classes]
            part = head_logits(own, h.temperature, h.lam)
            logits = part if logits is None else logits + part
        return logits


class CSRA(nn.Module):
    """``forward(images) -> logits [B, num_classes]``: ``backbone`` (any module with
    ``out_dim`` returning a feature map), then CSRA heads with ``temperatures`` (one per
    head) and ``lam``. Freezing the backbone is the builder's
    (``mlcore.create_backbone(..., freeze=...)``). Official CSRA checkpoints load as they
    are (:data:`OFFICIAL_LAYOUT`, through ``mlcore.load_weights``)."""

    weight_layouts = (OFFICIAL_LAYOUT,)

    def __init__(self, backbone: nn.Module, num_classes: int, temperatures: Sequence[float] = (1,),
                 lam: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.classifier = MultiHead(backbone.out_dim, num_classes, temperatures, lam)
        #: the tensors with one entry per label, and their label axes (``weights_classes``)
        self.class_axes = {f"classifier.{i}.head.weight": (0,) for i in range(len(temperatures))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))
