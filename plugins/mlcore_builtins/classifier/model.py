"""The plain multi-label classifier: backbone → global average pool → linear."""
from __future__ import annotations

import torch
from torch import nn

from mlcore import WeightLayout

#: the seed's ResNet101 saved a whole torchvision ResNet as ``network.*``, its ``fc`` the
#: classifier: read as backbone + ``fc``
SEED_LAYOUT = WeightLayout("seed ResNet", detect="network.",
                           rename=(("network.fc.", "fc."), ("network.", "backbone.")))


class Classifier(nn.Module):
    """``forward(images) -> logits [B, num_classes]``; ``backbone`` is any module with
    ``out_dim`` that returns a feature map. Weight files of the seed load as they are
    (:data:`SEED_LAYOUT`, through ``mlcore.load_weights``)."""

    weight_layouts = (SEED_LAYOUT,)

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(backbone.out_dim, num_classes)
        #: the tensors with one entry per label, and their label axes (``weights_classes``)
        self.class_axes = {"fc.weight": (0,), "fc.bias": (0,)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.backbone(x)).flatten(1)))
