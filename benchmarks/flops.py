"""Floating-point operations of one forward + backward pass, counted by PyTorch's
``torch.utils.flop_counter`` (matrix products and attention; the elementwise work is left
out). Where the matrix products are the time (a CPU, or a GPU at a large batch), the ratio
of two formulations' counts is the most an exact rewrite of one into the other can gain:
the benchmarks print it beside the measured speed-up, so a missed target can be told apart
from a slow implementation."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_backward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """The counted operations of ``model(x)`` and its backward (gradients of the parameters,
    and of ``x`` if it requires them) in training mode; the gradients are cleared after."""
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    x.grad = None
    return counter.get_total_flops()
