"""``mlgcn``: ML-GCN (Chen et al., CVPR 2019, "Multi-Label Image Recognition with Graph
Convolutional Networks") — what the official code (github Megvii-Nanjing/ML-GCN) computes.

Any backbone by name (the official: ``resnet101``; its ``out_dim`` is the width the
official fixes at 2048); the image feature is the global max pool of the last map. Label
word vectors from ``embeddings`` (GloVe/word2vec text or a C×d ``.npy``, e.g. the official
``coco_glove_word2vec.pkl`` saved as ``.npy``) pass through two graph convolutions over
the label graph and become one classifier per label. The graph is built from the train
split (LabelInfo) with the official ``gen_A``: P(j|i) binarized at ``t``, each column
scaled to sum ``p``, plus the identity. ``weights`` loads a whole trained model: mlcore's
checkpoints and the official ones (``{'epoch', 'arch', 'state_dict', 'best_score'}``,
written by torch 0.3 without BatchNorm counters); a file's ``A`` replaces the graph built
from the train split, as the official load does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlcore import Plugin, weights_classes_field


@dataclass
class MLGCNConfig:
    """``t``: the threshold binarizing P(j|i) (the official 0.4 for COCO and VOC);
    ``p``: the weight of the neighbours against the node itself (the official 0.25);
    ``hidden_dim``: the first graph convolution's width (the official 1024);
    ``weights_classes``: a text file of the labels of ``weights`` in its output order, one
    per line (the released COCO files are in alphabetical order; mlcore's ``coco`` in the
    annotation file's): the file's graph ``A`` is reordered by name."""

    embeddings: str = field(metadata={"path": "file"})
    backbone: str = field(default="resnet101", metadata={"plugin": "backbone"})
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    missing_words: Literal["error", "zero"] = "error"
    t: float = 0.4
    p: float = 0.25
    hidden_dim: int = 1024
    freeze: Literal["none", "all", "all_but_last"] = "none"

    def validate(self):
        out = []
        if not 0 < self.t <= 1:
            out.append(("t", f"must be in (0, 1], got {self.t}"))
        if self.p < 0:
            out.append(("p", f"must be >= 0, got {self.p}"))
        if self.hidden_dim < 1:
            out.append(("hidden_dim", f"must be >= 1, got {self.hidden_dim}"))
        return out


def build(cfg: MLGCNConfig, num_classes: int, info=None):
    import torch

    import mlcore

    from .model import MLGCN, label_graph

    if info is None:
        raise mlcore.MlcoreError("model 'mlgcn' needs the train split's label statistics (build it "
                                 "through a config, or give mlcore.create "
                                 "info=mlcore.LabelInfo.from_targets(classes, targets))")
    if len(info.classes) != num_classes:
        raise mlcore.MlcoreError(f"model 'mlgcn': the label statistics have {len(info.classes)} classes, "
                                 f"the dataset {num_classes}")
    words = torch.from_numpy(mlcore.label_vectors(cfg.embeddings, info.classes, cfg.missing_words))
    backbone = mlcore.create_backbone(cfg.backbone, freeze=cfg.freeze,
                                      **({"pretrained": cfg.pretrained} if cfg.pretrained else {}))
    model = MLGCN(backbone, words, label_graph(info.conditional_probabilities(), cfg.t, cfg.p),
                  hidden=cfg.hidden_dim)
    if cfg.weights:
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes)
    return model


plugin = Plugin("model", "mlgcn",
                "ML-GCN: label classifiers from word vectors by a GCN over the labels (CVPR 2019)",
                MLGCNConfig, build)
