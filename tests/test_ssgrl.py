"""SSGRL: the lean computation equals the official one; weights of every known layout
load; label vectors; backbones by name; the freezing policy."""
from __future__ import annotations

import os

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


def test_freezing_policy_keeps_frozen_batchnorm_in_eval(tmp_path):
    model = ssgrl(tmp_path).train()
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone")}
    assert trainable == {"layer4"}
    assert not model.backbone.bn1.training and not model.backbone.layer3[0].bn1.training
    assert model.backbone.layer4[0].bn1.training and model.word_semantic.training
    loss = model(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
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


def test_glove_text_with_multiword_labels_and_missing_words(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    from mlcore_builtins.ssgrl.embeddings import label_vectors

    vocab = {"person": 1, "dog": 2, "traffic": 3, "light": 5, "dining": 7, "table": 9, "red": 11, "circle": 13,
             "Cat": 17}
    glove = tmp_path / "glove.txt"
    lines = [f"{w} " + " ".join(str(v + i / 10) for i in range(4)) for w, v in vocab.items()]
    glove.write_text("\n".join(["the 0 0 0 0", "e.g . 1 1 1 1"] + lines) + "\n")
    vec = label_vectors(str(glove), CLASSES)
    assert vec.shape == (6, 4)
    assert np.allclose(vec[2], [4.0, 4.1, 4.2, 4.3])  # mean of traffic and light
    assert np.allclose(vec[3], [8.0, 8.1, 8.2, 8.3])  # diningtable read as "dining table"
    assert np.allclose(vec[5], [17.0, 17.1, 17.2, 17.3])  # found case-insensitively
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 4\n" + "\n".join(lines[:2]) + "\n")
    with pytest.raises(MlcoreError, match=r"lacks words of 4 label\(s\): traffic light: traffic, light"):
        label_vectors(str(w2v), CLASSES)
    zero = label_vectors(str(w2v), CLASSES, missing_words="zero")
    assert np.allclose(zero[0], [1.0, 1.1, 1.2, 1.3]) and np.all(zero[2] == 0)
    with pytest.raises(MlcoreError, match=r"has shape \(3, 2\); expected 6×d"):
        np.save(tmp_path / "bad.npy", np.zeros((3, 2)))
        label_vectors(str(tmp_path / "bad.npy"), CLASSES)
    with pytest.raises(MlcoreError, match="embeddings file .* does not exist"):
        label_vectors(str(tmp_path / "nope.txt"), CLASSES)
    assert os.listdir(tmp_path / "cache" / "embeddings")  # the text result is cached
