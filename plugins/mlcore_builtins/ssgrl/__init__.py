"""``ssgrl``: Semantic-Specific Graph Representation Learning (Chen et al., ICCV 2019).

Any backbone by name (the official: ``resnet101`` with its 2×2 feature pool); label word
vectors from ``embeddings`` (GloVe/word2vec text or a C×d ``.npy``); the label graph from
the train split's co-occurrence (LabelInfo). ``weights`` loads a whole trained model:
mlcore's checkpoints, the seed's and the official SSGRL's (switching the reset gate to
the official variant).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin, weights_classes_field


@dataclass
class SSGRLConfig:
    embeddings: str = field(metadata={"path": "file"})
    backbone: str = field(default="resnet101", metadata={"plugin": "backbone"})
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    missing_words: Literal["error", "zero"] = "error"
    time_step: int = 3
    hidden_dim: int = 1024
    output_dim: int = 2048
    feature_pool: int = 2
    reset_gate: Literal["paper", "official"] = "paper"
    freeze: Literal["all_but_last", "none", "all"] = "all_but_last"

    def validate(self):
        out = [(k, f"must be >= 1, got {getattr(self, k)}")
               for k in ("time_step", "hidden_dim", "output_dim", "feature_pool") if getattr(self, k) < 1]
        return out


def build(cfg: SSGRLConfig, num_classes: int, info=None):
    import torch

    import mlcore

    from .model import SSGRL, adjacency

    if info is None:
        raise mlcore.MlcoreError("model 'ssgrl' needs the train split's label statistics (build it "
                                 "through a config, or give mlcore.create "
                                 "info=mlcore.LabelInfo.from_targets(classes, targets))")
    words = torch.from_numpy(mlcore.label_vectors(cfg.embeddings, info.classes, cfg.missing_words))
    backbone = mlcore.create_backbone(cfg.backbone, freeze=cfg.freeze,
                                      **({"pretrained": cfg.pretrained} if cfg.pretrained else {}))
    model = SSGRL(backbone, words, adjacency(info), time_step=cfg.time_step, hidden=cfg.hidden_dim,
                  output_dim=cfg.output_dim, feature_pool=cfg.feature_pool, reset_gate=cfg.reset_gate)
    if cfg.weights:
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes)
    return model


plugin = Plugin("model", "ssgrl", "SSGRL: semantic decoupling + gated graph network over the labels (ICCV 2019)",
                SSGRLConfig, build)
