"""An optimizer plugin written as a plain function: its signature is its schema.

``params`` is the model's parameter groups (given by mlcore); the other arguments are
the YAML keys of ``optimizer: {name: nesterov_sgd, lr: 0.02}``.
"""
from __future__ import annotations


def nesterov_sgd(params, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 1e-4):
    """SGD with Nesterov momentum."""
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
