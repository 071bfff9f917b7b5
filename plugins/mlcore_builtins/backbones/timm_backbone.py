"""Any timm model as a feature extractor (``backbone: timm/<model name>``)."""
from __future__ import annotations

import math

import torch
from torch import nn

from mlcore import MlcoreError, load_weights


class TimmBackbone(nn.Module):
    """``[B,3,H,W]`` → ``[B,out_dim,h,w]``: timm's ``forward_features``. Transformers'
    token outputs are turned back into a grid (prefix tokens such as CLS dropped)."""

    def __init__(self, variant: str, pretrained: str | None = None):
        super().__init__()
        import timm

        if not timm.is_model(variant):
            close = timm.list_models(f"*{variant[:4]}*")[:8]
            raise MlcoreError(f"unknown timm model {variant!r}" + (f"; similar: {', '.join(close)}" if close else ""))
        self.model = timm.create_model(variant, pretrained=False, num_classes=0)
        if pretrained:  # a local .pth/.safetensors, read without running code; nothing is downloaded
            head = tuple(f"{n}." for n in ("fc", "head", "classifier", "head.fc"))
            load_weights(self.model, pretrained, ignore=head, what="pretrained weights",
                         hint="weights of another architecture?")
        self.out_dim = self.model.num_features
        self.num_prefix_tokens = getattr(self.model, "num_prefix_tokens", 0)

    def last_stage(self) -> nn.Module:
        """The module of timm's last feature stage (``feature_info``), or the last child
        holding parameters."""
        info = getattr(self.model, "feature_info", None)
        if info:
            name = info[-1].get("module") if isinstance(info[-1], dict) else None
            if name:
                try:
                    return self.model.get_submodule(name)
                except AttributeError:
                    pass
        children = [m for m in self.model.children() if any(True for _ in m.parameters())]
        return children[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model.forward_features(x)
        if y.ndim == 4 and y.shape[1] != self.out_dim and y.shape[-1] == self.out_dim:
            y = y.permute(0, 3, 1, 2)  # NHWC models (e.g. some convnexts, swin)
        if y.ndim == 3:  # tokens [B, N, D]
            y = y[:, self.num_prefix_tokens:]
            n = y.shape[1]
            side = math.isqrt(n)
            h, w = (side, side) if side * side == n else (n, 1)
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], h, w)
        return y
