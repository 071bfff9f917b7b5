"""torchvision ResNets as feature extractors: the network up to ``layer4``."""
from __future__ import annotations

import torch
from torch import nn


class ResNetBackbone(nn.Module):
    """``[B,3,H,W]`` → ``[B,out_dim,H/32,W/32]``; submodule names are torchvision's, so
    torchvision weight files load as they are (minus ``fc``)."""

    def __init__(self, arch: str, pretrained: str | None = None):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained:  # a local file, read without running code from it; nothing is downloaded
            import mlcore

            mlcore.load_weights(net, pretrained, ignore=("fc.",), what="pretrained weights",
                                hint="weights of another architecture?")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_dim = net.fc.in_features
        self.arch = arch

    def last_stage(self) -> nn.Module:
        """The stage that keeps training when the rest is frozen (the seed's policy)."""
        return self.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
