"""The plain multi-label classifier: backbone → global average pool → linear."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``forward(images) -> logits [B, num_classes]``; ``backbone`` is any module with
    ``out_dim`` that returns a feature map."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(backbone.out_dim, num_classes)

    def remap_state_dict(self, state: dict) -> dict:
        """The seed's ResNet101 saved a whole torchvision ResNet as ``network.*`` (its
        ``fc`` the classifier): read it as backbone + ``fc``."""
        if not any(k.startswith("network.") for k in state):
            return state
        return {("fc." + k[len("network.fc."):] if k.startswith("network.fc.") else
                 "backbone." + k[len("network."):] if k.startswith("network.") else k): v for k, v in state.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.backbone(x)).flatten(1)))
