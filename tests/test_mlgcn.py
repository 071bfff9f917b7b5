"""ML-GCN: the label graph and Â, the forward, the official checkpoints (torch 0.3 legacy
files without BatchNorm counters), training from a config, and what never trains — each
against a formula written out here, independently of the plugin's code."""
from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mlcore
from conftest import tiny_config
from mlcore.errors import MlcoreError
from mlcore.labels import LabelInfo
from mlcore_builtins.mlgcn import MLGCNConfig, plugin

CLASSES = ["person", "dog", "cat", "car", "bus", "never_seen"]
T, P = 0.4, 0.25


def targets() -> np.ndarray:
    """Labels that co-occur (dog with person, bus with car…) and one never seen."""
    g = np.random.default_rng(0)
    t = (g.random((60, len(CLASSES))) < 0.3).astype(np.uint8)
    t[g.random(60) < 0.5, 0] = 1
    t[t[:, 1] == 1, 0] = 1  # every dog comes with a person
    t[(t[:, 3] == 1) & (g.random(60) < 0.7), 4] = 1
    t[:, -1] = 0
    return t


def info() -> LabelInfo:
    return LabelInfo.from_targets(CLASSES, targets())


def embeddings(tmp_path, n=len(CLASSES), dim=300, seed=1):
    path = tmp_path / f"emb{n}.npy"
    np.save(path, np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32))
    return str(path)


def mlgcn(tmp_path, li=None, **over):
    params = {"backbone": "resnet18", "embeddings": embeddings(tmp_path), "hidden_dim": 64, **over}
    cfg = MLGCNConfig(**params)
    assert cfg.validate() == []
    li = li or info()
    return plugin.build(cfg, num_classes=len(li.classes), info=li)


def reference_graph(t: np.ndarray, thr=T, p=P):
    """The official gen_A and gen_adj, element by element, from the raw 0/1 targets."""
    n, c = t.shape
    count = [sum(int(t[k, i]) for k in range(n)) for i in range(c)]
    co = [[sum(int(t[k, i] and t[k, j]) for k in range(n)) for j in range(c)] for i in range(c)]
    prob = [[co[i][j] / count[i] if i != j and count[i] else 0.0 for j in range(c)] for i in range(c)]
    b = [[1.0 if prob[i][j] >= thr else 0.0 for j in range(c)] for i in range(c)]
    col = [sum(b[i][j] for i in range(c)) for j in range(c)]
    a = [[b[i][j] * p / (col[j] + 1e-6) + (1.0 if i == j else 0.0) for j in range(c)] for i in range(c)]
    d = [sum(a[i]) ** -0.5 for i in range(c)]
    ahat = [[d[i] * a[j][i] * d[j] for j in range(c)] for i in range(c)]
    return (torch.tensor(prob, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
            torch.tensor(a, dtype=torch.float64), torch.tensor(ahat, dtype=torch.float64))


def leaky(z):
    return torch.where(z > 0, z, 0.2 * z)


def reference_logits(fmap, words, w1, w2, ahat):
    """Global max pool, two graph convolutions (LeakyReLU 0.2 between), dot product."""
    pooled = fmap.flatten(2).max(dim=2).values  # B×D
    h = ahat @ leaky(ahat @ (words @ w1)) @ w2  # C×D
    return pooled @ h.t()


# -- (1) the label graph and Â ------------------------------------------------------------

def test_label_graph_and_normalized_adjacency_equal_the_official_formula(tmp_path):
    from mlcore_builtins.mlgcn.model import normalized_adjacency

    prob, b, a, ahat = reference_graph(targets())
    assert 0 < b.sum() < b.numel() - len(CLASSES)  # a graph with edges, not full
    assert not torch.equal(b, b.t())  # P(j|i) ≠ P(i|j): the direction matters
    model = mlgcn(tmp_path)
    assert model.A.dtype == torch.float32
    assert torch.allclose(model.A.double(), a, rtol=0, atol=1e-7)
    got = normalized_adjacency(model.A)
    assert torch.allclose(got.double(), ahat, rtol=1e-6, atol=1e-7)
    # the official expression, literally: (A·D)ᵀ·D with D = diag(rowsum(A)^-½)
    dm = torch.diag(model.A.sum(1).pow(-0.5))
    assert torch.allclose(got, torch.matmul(torch.matmul(model.A, dm).t(), dm), rtol=1e-6, atol=1e-7)
    # a label never seen: P's row and column are zero (the official divides 0 by 0: NaN);
    # A's row and Â's row are the identity's
    k = len(CLASSES) - 1
    assert torch.all(prob[k] == 0) and torch.all(prob[:, k] == 0)
    e = torch.zeros(len(CLASSES))
    e[k] = 1
    assert torch.equal(model.A[k], e) and torch.allclose(got[k], e) and torch.isfinite(got).all()
    assert torch.all(model.A.diagonal() >= 1)  # the node itself, plus p-weighted neighbours
    # t and p are the config's
    _, _, a2, _ = reference_graph(targets(), thr=0.2, p=0.5)
    assert torch.allclose(mlgcn(tmp_path, t=0.2, p=0.5).A.double(), a2, rtol=0, atol=1e-7)


def test_threshold_keeps_p_equal_to_t_and_scales_columns():
    from mlcore_builtins.mlgcn.model import label_graph

    # label 0 in 5 images, 2 of them with label 1: P(1|0) = 0.4 = t is an edge (official: >= t);
    # P(0|1) = 1; label 2 with label 0 in 1 of 5: P(2|0) = 0.2 is none; P(0|2) = 1
    t = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 0], [1, 0, 0]])
    a = label_graph(LabelInfo.from_targets(["a", "b", "c"], t).conditional_probabilities(), 0.4, 0.25)
    s = 0.25 / (2 + 1e-6)  # column 0 has two edges (from b and from c)
    want = torch.tensor([[1, 0.25 / (1 + 1e-6), 0], [s, 1, 0], [s, 0, 1]], dtype=torch.float64).float()
    assert torch.equal(a, want)


def test_config_ranges():
    bad = MLGCNConfig(embeddings="x", t=0, p=-1, hidden_dim=0)
    assert {k for k, _ in bad.validate()} == {"t", "p", "hidden_dim"}
    assert MLGCNConfig(embeddings="x").freeze == "none"


# -- (2) the forward ---------------------------------------------------------------------

def test_forward_equals_the_formula(tmp_path):
    torch.manual_seed(0)
    model = mlgcn(tmp_path).eval()
    _, _, _, ahat = reference_graph(targets())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = model.backbone(x)  # 2×2
        want = reference_logits(fmap.double(), model.words.double(), model.gc1.weight.double(),
                                model.gc2.weight.double(), ahat)
        got = model(x)
    assert got.shape == (2, len(CLASSES)) and model.gc2.weight.shape == (64, 512)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    # parameters stored (in, out), initialized U(±1/√out)
    assert model.gc1.weight.shape == (300, 64)
    assert model.gc1.weight.abs().max() <= 1 / math.sqrt(64)
    assert model.gc2.weight.abs().max() <= 1 / math.sqrt(512)


class TinyBackbone(nn.Module):
    """A backbone of one 1×1 convolution: the map has the input's size."""

    out_dim = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        return self.conv(x)


def test_global_max_pool_is_the_official_maxpool_at_448_px(tmp_path):
    from mlcore_builtins.mlgcn.model import MLGCN, label_graph

    torch.manual_seed(0)
    li = info()
    words = torch.randn(len(CLASSES), 300)
    model = MLGCN(TinyBackbone(), words, label_graph(li.conditional_probabilities()), hidden=16).eval()
    x = torch.randn(2, 3, 14, 14)  # the official 448 px gives a 14×14 map: MaxPool2d(14, 14)
    with torch.no_grad():
        feature = F.max_pool2d(model.backbone(x), 14, 14).view(2, -1)
        adj = model.A.sum(1).pow(-0.5)
        dm = torch.diag(adj)
        adj = torch.matmul(torch.matmul(model.A, dm).t(), dm)
        h = model.gc2(model.relu(model.gc1(words, adj)), adj)
        assert torch.allclose(model(x), torch.matmul(feature, h.transpose(0, 1)), rtol=1e-5, atol=1e-6)
    assert model.weight_layouts == ()  # not a ResNet: no official layout


# -- (3) official checkpoints ----------------------------------------------------------------

def official_state(model, seed=5):
    """What the official code saves for ``model``'s shapes: ``features.{0,1,4,5,6,7}``,
    ``gc1.weight``, ``gc2.weight``, ``A`` — new values, no ``num_batches_tracked``."""
    g = torch.Generator().manual_seed(seed)
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    state = collections.OrderedDict()
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("backbone."):
            stage, rest = k[len("backbone."):].split(".", 1)
            k = f"features.{names[stage]}.{rest}"
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5
        else:
            v = torch.randn(v.shape, generator=g) * 0.05
        state[k] = v
    c = model.A.shape[0]
    state["A"] = torch.rand(c, c, generator=g) * 0.3 + torch.eye(c)  # another graph than the train split's
    return state


class Torch03Tensor:
    """Pickles as torch 0.3 wrote a tensor: ``torch._utils._rebuild_tensor(storage, offset,
    size, stride)`` over a typed ``torch.FloatStorage`` (later torch writes ``_rebuild_tensor_v2``)."""

    def __init__(self, t):
        self.t = t.contiguous()

    def __reduce__(self):
        storage = torch.storage.TypedStorage(wrap_storage=self.t.untyped_storage(), dtype=self.t.dtype,
                                             _internal=True)
        return torch._utils._rebuild_tensor, (storage, 0, tuple(self.t.shape), self.t.stride())


@pytest.mark.parametrize("style", ["legacy", "torch03", "dataparallel"])
def test_official_checkpoint_loads_and_its_graph_replaces_the_train_split_one(tmp_path, style):
    torch.manual_seed(0)
    fresh = mlgcn(tmp_path)
    state = official_state(fresh)
    assert not any("num_batches_tracked" in k for k in state)
    assert {k.split(".")[1] for k in state if k.startswith("features.")} == {"0", "1", "4", "5", "6", "7"}
    saved = collections.OrderedDict(state)
    if style == "torch03":
        saved = collections.OrderedDict((k, Torch03Tensor(v)) for k, v in state.items())
    elif style == "dataparallel":
        saved = collections.OrderedDict(("module." + k, v) for k, v in state.items())
    path = tmp_path / "coco_checkpoint.pth.tar"
    torch.save({"epoch": 20, "arch": None, "state_dict": saved, "best_score": 83.0}, path,
               _use_new_zipfile_serialization=False)
    with open(path, "rb") as f:
        assert f.read(2) != b"PK"  # the legacy (non-zip) format
    if style == "torch03":
        assert b"_rebuild_tensor\n" in path.read_bytes() and b"_rebuild_tensor_v2" not in path.read_bytes()

    model = mlgcn(tmp_path, weights=str(path)).eval()  # through the `weights` key
    assert torch.equal(model.A, state["A"]) and not torch.equal(model.A, fresh.A)
    assert torch.equal(model.gc1.weight, state["gc1.weight"])
    assert torch.equal(model.gc2.weight, state["gc2.weight"])
    assert torch.equal(model.backbone.conv1.weight, state["features.0.weight"])
    assert torch.equal(model.backbone.bn1.running_var, state["features.1.running_var"])
    assert torch.equal(model.backbone.layer4[1].bn2.bias, state["features.7.1.bn2.bias"])
    assert int(model.backbone.bn1.num_batches_tracked) == 0

    # identical logits to the official computation with the file's values
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = model.backbone(x)
        a = state["A"]
        dm = torch.diag(a.sum(1).pow(-0.5))
        adj = torch.matmul(torch.matmul(a, dm).t(), dm)
        h = torch.matmul(adj, torch.matmul(model.words, state["gc1.weight"]))
        h = torch.matmul(adj, torch.matmul(F.leaky_relu(h, 0.2), state["gc2.weight"]))
        want = torch.matmul(F.max_pool2d(fmap, fmap.shape[-2:]).view(2, -1), h.transpose(0, 1))
        got = model(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)

    # mlcore.load_weights reads it too, names the layout, and gives the same logits
    other = mlgcn(tmp_path).eval()
    layout = mlcore.load_weights(other, str(path))
    assert layout.name == "official ML-GCN" and layout.optional == (".num_batches_tracked",)
    with torch.no_grad():
        assert torch.equal(other(x), got)


def test_mlcore_checkpoints_round_trip_with_their_graph(tmp_path):
    model = mlgcn(tmp_path)
    with torch.no_grad():
        model.A.mul_(0.5).add_(torch.eye(len(CLASSES)))
        model.gc1.weight.add_(1)
    assert "A" in model.state_dict() and "words" not in model.state_dict()
    path = tmp_path / "ours.pt"
    torch.save(model.state_dict(), path)
    back = mlgcn(tmp_path, weights=str(path))
    assert torch.equal(back.A, model.A) and torch.equal(back.gc1.weight, model.gc1.weight)
    assert mlcore.load_weights(mlgcn(tmp_path), str(path)) is None  # mlcore's own layout


def test_official_checkpoint_of_other_shapes_or_a_nan_graph_is_a_clear_error(tmp_path):
    model = mlgcn(tmp_path)
    state = official_state(model)
    coco = dict(state, A=torch.eye(80))
    torch.save({"epoch": 1, "arch": None, "state_dict": coco, "best_score": 80.0}, tmp_path / "coco.pth.tar",
               _use_new_zipfile_serialization=False)
    with pytest.raises(MlcoreError, match=r"A: checkpoint has shape \(80, 80\), the model \(6, 6\)"):
        mlgcn(tmp_path, weights=str(tmp_path / "coco.pth.tar"))
    a = state["A"].clone()
    a[2] = float("nan")  # what the official gen_A writes for a label never seen
    torch.save({"epoch": 1, "arch": None, "state_dict": dict(state, A=a), "best_score": 80.0},
               tmp_path / "nan.pth.tar", _use_new_zipfile_serialization=False)
    with pytest.raises(MlcoreError, match=r"checkpoint '.*nan\.pth\.tar': the loaded label graph 'A' has NaN"):
        mlgcn(tmp_path, weights=str(tmp_path / "nan.pth.tar"))


# -- (4) from a config, training; (5) what never trains ---------------------------------------

def test_builds_from_a_config_and_trains_one_epoch(tmp_path):
    from mlcore.engine.optim import build_optimizer

    from mlcore.registry import Registry

    reg = Registry()
    reg.register("model", "mlgcn", plugin, replace=True)
    cfg = tiny_config(tmp_path / "run", model={"name": "mlgcn", "backbone": "resnet18",
                                               "embeddings": embeddings(tmp_path, n=10), "t": 0.3},
                      optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4,
                                 "backbone_lr_mult": 0.1},
                      loss="bce", scheduler={"name": "step", "step_size": 30, "gamma": 0.1})
    cfg["train"].update(epochs=1, grad_clip=10.0)
    exp = mlcore.build(cfg, registry=reg)
    model = exp.model
    assert model.gc2.weight.shape == (1024, 512) and model.A.shape == (10, 10)
    assert model.A.sum() > 10  # the shapes' scenes give the graph edges

    # (5) A and the word vectors are buffers: never parameters, never in the optimizer
    names = {n for n, _ in model.named_parameters()}
    assert "A" not in names and "words" not in names
    assert not model.A.requires_grad and not model.words.requires_grad
    opt = build_optimizer(exp.config.optimizer, model)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.A) not in in_opt and id(model.words) not in in_opt
    assert in_opt == {id(p) for p in model.parameters()}  # freeze: none — the whole backbone trains
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.01, 0.1])  # the backbone at lr × 0.1, the GCN at lr

    a0, w0, g0 = model.A.clone(), model.words.clone(), model.gc1.weight.detach().clone()
    result = exp.fit()
    assert result["reason"] == "finished"
    assert torch.equal(model.A.cpu(), a0.cpu()) and torch.equal(model.words.cpu(), w0.cpu())
    assert not torch.equal(model.gc1.weight.detach().cpu(), g0.cpu())
    assert 0 <= exp.evaluate("val")["mAP"] <= 100
    # the run's checkpoint carries A and the trained GCN, and loads back
    back = mlcore.build(cfg, registry=reg)
    back.load_checkpoint(back.checkpoint_path("last.pt"))
    assert torch.equal(back.model.A.cpu(), a0.cpu())
    assert torch.equal(back.model.gc1.weight.cpu(), model.gc1.weight.detach().cpu())


def test_the_recipes_load():
    from conftest import ROOT

    coco = mlcore.load_config(ROOT / "configs" / "coco_mlgcn.yaml")
    voc = mlcore.load_config(ROOT / "configs" / "voc2007_mlgcn.yaml")
    for cfg in (coco, voc):
        assert (cfg.model.name, cfg.model.cfg.t, cfg.model.cfg.p, cfg.train.grad_clip) == ("mlgcn", 0.4, 0.25, 10)
        assert (cfg.optimizer.cfg.lr, cfg.optimizer.common.backbone_lr_mult, cfg.train.batch_size) == (0.1, 0.1, 16)
    assert (voc.dataset.name, voc.data.train_split, voc.data.val_split) == ("voc2007", "trainval", "test")
    assert voc.dataset.cfg.difficult == {"trainval": "positive", "test": "ignore"}
