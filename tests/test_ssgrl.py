"""SSGRL: the lean computation equals the official one; weights of every known layout
load; the label graph; backbones by name; the freezing policy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mlcore
from mlcore.errors import MlcoreError
from mlcore.labels import LabelInfo
from ssgrl_reference import official_head

CLASSES = ["person", "dog", "traffic light", "diningtable", "red_circle", "cat"]


def info(n=len(CLASSES)):
    g = np.random.default_rng(0)
    targets = (g.random((40, n)) < 0.35).astype(np.uint8)
    targets[:, -1] = 0  # a label never seen in training: a zero row in the graph
    return LabelInfo.from_targets(CLASSES[:n], targets)


def ssgrl(tmp_path, **over):
    emb = tmp_path / "emb.npy"
    np.save(emb, np.random.default_rng(1).normal(size=(len(CLASSES), 16)).astype(np.float32))
    params = {"backbone": "resnet18", "embeddings": str(emb), "hidden_dim": 64, "output_dim": 48, **over}
    return mlcore.create("model", "ssgrl", num_classes=len(CLASSES), info=info(), **params)


@pytest.mark.parametrize("gate", ["official", "paper"])
def test_lean_computation_equals_the_official_one(tmp_path, gate):
    torch.manual_seed(0)
    model = ssgrl(tmp_path, feature_pool=1, reset_gate=gate).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        fmap = model.backbone(x)  # 3×3
        want = official_head(model, fmap, reset_gate=gate)
        got = model(x)
    assert got.shape == (2, len(CLASSES))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()


def test_gradients_equal_the_official_ones(tmp_path):
    torch.manual_seed(0)
    model = ssgrl(tmp_path, feature_pool=1, reset_gate="official", freeze="none").train()
    fmap = torch.randn(2, 512, 3, 3)

    def grads(fn):
        model.zero_grad()
        fn().pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()
                if p.grad is not None and not n.startswith("backbone")}

    def ours():
        feats = fmap.flatten(2).transpose(1, 2)
        h0 = model.word_semantic(feats, model.words)
        h = model.graph_net(h0, model.in_matrix, model.out_matrix)
        return model.classifiers(torch.tanh(model.fc_output(torch.cat((h, h0), 2))))

    a, b = grads(ours), grads(lambda: official_head(model, fmap))
    assert set(a) == set(b)
    # fc_3/fc_a biases shift every position's score alike: they cannot learn, so do not
    # train; the official reset gate never uses fc_eq4_u
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad and not n.startswith("backbone")}
    assert frozen == {"word_semantic.fc_3.bias", "word_semantic.fc_a.bias", "graph_net.fc_eq4_u.weight",
                      "graph_net.fc_eq4_u.bias"}
    model.word_semantic.fc_a.bias.requires_grad_(True)
    (g,) = torch.autograd.grad(official_head(model, fmap).pow(2).sum(), model.word_semantic.fc_a.bias)
    assert g.abs().max() < 1e-5  # the official computation gives it (numerically) no gradient either
    for n in a:
        assert torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6), n


def test_graph_adjacency_from_train_statistics(tmp_path):
    model = ssgrl(tmp_path)
    li = info()
    a = model.in_matrix
    i, j = 0, 1
    assert a[i, j].item() == pytest.approx(li.cooccurrence[i, j] / li.counts[i])
    assert torch.all(a.diagonal() == 0) and torch.all(a[-1] == 0)
    assert torch.equal(model.out_matrix, a.t())
    p = li.conditional_probabilities()  # the shared matrix: P(j | i), diagonal as computed
    assert p.dtype == np.float64 and p.shape == (6, 6)
    assert np.all(p.diagonal()[:-1] == 1) and np.all(p[-1] == 0)  # the last label is never seen
    np.fill_diagonal(p, 0)
    assert torch.equal(a, torch.from_numpy(p).float())


def test_freezing_policy_keeps_frozen_batchnorm_in_eval(tmp_path):
    model = ssgrl(tmp_path).train()  # SSGRL's default: all_but_last
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone")}
    assert trainable == {"layer4"}
    frozen_bn, trained_bn = model.backbone.layer3[0].bn1, model.backbone.layer4[0].bn1
    before = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    loss = model(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
    assert not model.backbone.bn1.training and not frozen_bn.training
    assert trained_bn.training and model.word_semantic.training
    assert torch.equal(frozen_bn.running_mean, before[0])  # frozen: ImageNet statistics kept
    assert not torch.equal(trained_bn.running_mean, before[1])
    assert model.backbone.conv1.weight.grad is None and model.backbone.layer4[0].conv1.weight.grad is not None
    assert all(p.requires_grad for p in ssgrl(tmp_path, freeze="none").backbone.parameters())


def test_timm_backbone_by_name_and_pooling(tmp_path):
    model = ssgrl(tmp_path, backbone="timm/resnet18").eval()
    assert model.backbone.out_dim == 512 and model.backbone.last_stage() is model.backbone.model.layer4
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, len(CLASSES))  # a 1×1 map: pooling skipped


def test_checkpoints_of_the_seed_and_official_layouts_load(tmp_path):
    model = ssgrl(tmp_path)
    foreign = {("resnet_101." + k[len("backbone."):] if k.startswith("backbone.") else k): v.clone() + 1
               for k, v in model.state_dict().items()}
    official = tmp_path / "official.pth.tar"
    torch.save({"epoch": 12, "state_dict": {"module." + k: v for k, v in foreign.items()},
                "best_mAP": np.float64(0.837)}, official)  # numpy scalar, as the official files hold
    seed = tmp_path / "seed_best_model.pth"
    torch.save(foreign, seed)
    for path in (official, seed):
        fresh = ssgrl(tmp_path, weights=str(path))
        assert fresh.reset_gate == "official"
        assert torch.equal(fresh.backbone.conv1.weight, foreign["resnet_101.conv1.weight"])
        assert torch.equal(fresh.classifiers.bias, foreign["classifiers.bias"])
    coco = {k: v for k, v in foreign.items()}
    coco["classifiers.weight"] = torch.zeros(80, 48)
    coco["classifiers.bias"] = torch.zeros(80)
    torch.save({"epoch": 1, "state_dict": coco, "best_mAP": np.float64(0.8)}, tmp_path / "coco.pth.tar")
    with pytest.raises(MlcoreError, match=r"classifiers.weight: checkpoint has shape \(80, 48\), the model \(6, 48\)"):
        ssgrl(tmp_path, weights=str(tmp_path / "coco.pth.tar"))


def test_seed_resnet101_layout_loads_into_the_classifier(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=4)
    path = tmp_path / "seed_resnet.pth"
    torch.save({"network." + k: v for k, v in net.state_dict().items()}, path)
    model = mlcore.create("model", "resnet18", weights=str(path), num_classes=4)
    assert torch.equal(model.fc.weight, net.fc.weight) and torch.equal(model.backbone.conv1.weight, net.conv1.weight)
