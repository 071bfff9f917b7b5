"""TinyNet: three conv blocks and a linear layer — a model small enough for a CPU test."""
from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small convolutional multi-label classifier.

    width: channels of the first block (doubled in each of the next two).
    """

    def __init__(self, num_classes: int, width: int = 16, dropout: float = 0.0):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))
