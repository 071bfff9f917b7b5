"""``ml_decoder``: ML-Decoder (Ridnik et al., WACV 2023, "ML-Decoder: Scalable and Versatile
Classification Head") — what the official code (github.com/Alibaba-MIIL/ML_Decoder,
``src_files/ml_decoder/ml_decoder.py``) computes, on any backbone.

The head replaces global pooling and the fc: every position of the backbone's map is
projected to ``decoder_dim`` (ReLU), G = min(num_groups, C) fixed queries attend to them
in one decoder layer without self-attention, and a group FC turns each query into
g = int(C/G + 0.999) logits (see :mod:`.model`). ``num_groups: -1`` is one query per class
(the official ``-1`` means 100 groups capped at C — the same for COCO's 80 labels).
``zsl: true`` queries with the labels' word vectors (``embeddings``) instead, one shared
logit layer scoring each: a model trained on some labels scores others from their vectors
(``model.set_label_vectors``). ``weights`` loads a whole trained model: mlcore's
checkpoints and the official ones (``train.py``'s bare state dict, the model zoo's
``{'model': …, 'idx_to_class': …}``; ResNet-50 via timm with the head at ``fc.``, timm
TResNets with it at ``head.``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlcore import Plugin, weights_classes_field

if TYPE_CHECKING:
    from .model import MLDecoder


@dataclass
class MLDecoderConfig:
    """``backbone``: a backbone plugin name (official: TResNet-M/L/XL, or timm's
    ResNet-50 — here ``resnet50``, ``timm/tresnet_m`` or ``timm/tresnet_v2_l``, the official
    TResNet-L; timm's ``tresnet_l`` is another network, and the official XL has no timm
    model); ``num_groups``: G, the number of
    queries (capped at the class count; -1: one per class; official OpenImages: 200);
    ``decoder_dim``, ``heads``, ``ff_dim``, ``dropout``: the decoder (official 768, 8,
    2048, 0.1); ``zsl``: zero-shot mode, the queries are the labels' word vectors from
    ``embeddings`` (GloVe/word2vec text or a C×d ``.npy``, see ``mlcore.label_vectors``;
    ``missing_words`` as there); ``pretrained``: local ImageNet weights for the backbone;
    ``weights``: a whole trained model (mlcore checkpoint or an official ML-Decoder file);
    ``weights_classes``: a text file of that file's label names in its output order (one
    per line), to put them in the dataset's order (only with one query per class);
    ``freeze``: which part of the backbone does not train (official: ``none``)."""

    backbone: str = field(default="resnet50", metadata={"plugin": "backbone"})
    num_groups: int = 100
    decoder_dim: int = 768
    heads: int = 8
    ff_dim: int = 2048
    dropout: float = 0.1
    zsl: bool = False
    embeddings: str | None = field(default=None, metadata={"path": "file"})
    missing_words: Literal["error", "zero"] = "error"
    pretrained: str | None = field(default=None, metadata={"path": "file"})
    weights: str | None = field(default=None, metadata={"path": "file"})
    weights_classes: str | None = weights_classes_field()
    freeze: Literal["none", "all", "all_but_last"] = "none"

    def validate(self) -> list[tuple[str, str]]:
        out = []
        if self.num_groups == 0 or self.num_groups < -1:
            out.append(("num_groups", f"must be >= 1, or -1 for one query per class, got {self.num_groups}"))
        for name in ("decoder_dim", "heads", "ff_dim"):
            if getattr(self, name) < 1:
                out.append((name, f"must be >= 1, got {getattr(self, name)}"))
        if self.heads >= 1 and self.decoder_dim >= 1 and self.decoder_dim % self.heads:
            out.append(("decoder_dim", f"must be a multiple of heads ({self.heads}), got {self.decoder_dim}"))
        if not 0 <= self.dropout < 1:
            out.append(("dropout", f"must be in [0, 1), got {self.dropout}"))
        if self.zsl and not self.embeddings:
            out.append(("embeddings", "zsl: true needs the labels' word vectors (a GloVe/word2vec text "
                                      "file or a C×d .npy)"))
        return out


def build(cfg: MLDecoderConfig, num_classes: int, info: Any = None) -> MLDecoder:
    """The model for ``num_classes`` labels; ``info`` (the train split's LabelInfo) gives the
    label names: zero-shot mode reads their word vectors, ``weights_classes`` their order."""
    import mlcore

    from .model import MLDecoder

    vectors = None
    if cfg.zsl:
        import torch

        if info is None:
            raise mlcore.MlcoreError("model 'ml_decoder' with zsl: true needs the label names to read their "
                                     "word vectors (build it through a config, or give mlcore.create "
                                     "info=mlcore.LabelInfo.from_targets(classes, targets))")
        vectors = torch.from_numpy(mlcore.label_vectors(cfg.embeddings, info.classes, cfg.missing_words))
    params = {"pretrained": cfg.pretrained} if cfg.pretrained else {}
    backbone = mlcore.create_backbone(cfg.backbone, freeze=cfg.freeze, **params)
    groups = None if cfg.num_groups == -1 else cfg.num_groups
    model = MLDecoder(backbone, num_classes, groups, dim=cfg.decoder_dim, heads=cfg.heads, ff_dim=cfg.ff_dim,
                      dropout=cfg.dropout, label_vectors=vectors)
    if cfg.weights_classes:
        model.class_axes  # noqa: B018 — a grouped head cannot reorder its labels: say so before reading
    if cfg.weights:
        hint = "another model or another number of labels?"
        if cfg.num_groups == -1 and num_classes > 100:
            hint += (" An official file trained with --num-of-groups -1 has 100 groups, not one query per "
                     "label as here: give num_groups: 100.")
        if cfg.backbone.startswith("timm/tresnet"):
            hint += (" An official TResNet-L file needs backbone: timm/tresnet_v2_l (timm's tresnet_l is "
                     "another, wider network); the official TResNet-XL has no timm model.")
        mlcore.load_weights(model, cfg.weights, classes=info.classes if info is not None else None,
                            file_classes=cfg.weights_classes, hint=hint)
    return model


plugin = Plugin("model", "ml_decoder",
                "ML-Decoder: a query-based classification head with group decoding and zero-shot queries",
                MLDecoderConfig, build)
