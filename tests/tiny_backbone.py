"""A backbone small enough for element-wise reference computations: one strided
convolution, a feature map of ``out_dim`` channels at 1/4 of the input side."""
from __future__ import annotations

from torch import nn


class TinyBackbone(nn.Module):
    """A feature map of ``out_dim`` channels at 1/4 of the input side."""

    def __init__(self, out_dim: int = 16):
        super().__init__()
        self.out_dim = out_dim
        self.conv = nn.Conv2d(3, out_dim, 4, stride=4)

    def forward(self, x):
        return self.conv(x)
