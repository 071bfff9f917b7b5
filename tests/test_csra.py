"""CSRA: the heads compute the official formula (pipeline/csra.py of Kevinz-code/CSRA);
official checkpoints load; the plugin trains from a config; head counts are checked; the
recipes load."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mlcore
from conftest import ROOT, tiny_config
from mlcore.errors import ConfigError, MlcoreError
from mlcore.registry import Registry
from tiny_backbone import TinyBackbone
from mlcore_builtins.csra import TEMPERATURES, plugin
from mlcore_builtins.csra.model import CSRA, OFFICIAL_LAYOUT

C = 5
SHAPES_CLASSES = 10  # the generated ``shapes`` set's label count


@pytest.fixture
def reg():
    """A registry with ``csra`` registered in this process (shadowing an installed entry
    point, should there be one)."""
    r = Registry()
    r.register("model", "csra", plugin, replace=True)
    return r


def reference(fmap: torch.Tensor, weights: list[torch.Tensor], temps, lam: float) -> torch.Tensor:
    """The official computation, element by element, in float64: for every head, image and
    class, score_p = (w_c · x_p) / ‖w_c‖ (norm over the input channels), base = mean_p
    score_p, attention = Σ_p score_p·exp(T·score_p) / Σ_q exp(T·score_q) — or max_p score_p
    when T = 99 — and the logit Σ_heads (base + λ·attention)."""
    B, D, h, w = fmap.shape
    x = fmap.double().reshape(B, D, h * w)
    out = torch.zeros(B, weights[0].shape[0], dtype=torch.float64)
    for W, T in zip(weights, temps):
        Wm = W.double().reshape(W.shape[0], D)
        for b in range(B):
            for c in range(Wm.shape[0]):
                norm = math.sqrt(sum(float(v) ** 2 for v in Wm[c]))
                s = [float(torch.einsum("d,d->", Wm[c], x[b, :, p])) / norm for p in range(h * w)]
                base = sum(s) / len(s)
                if T == 99:
                    att = max(s)
                else:
                    m = max(T * v for v in s)
                    e = [math.exp(T * v - m) for v in s]
                    att = sum(v * ev for v, ev in zip(s, e)) / sum(e)
                out[b, c] += base + lam * att
    return out


def test_official_temperature_settings():
    assert TEMPERATURES == {1: (1,), 2: (1, 99), 4: (1, 2, 4, 99), 6: (1, 2, 3, 4, 5, 99),
                            8: (1, 2, 3, 4, 5, 6, 7, 99)}


@pytest.mark.parametrize("heads", [1, 2, 4, 6, 8])
def test_heads_compute_the_official_formula(heads):
    torch.manual_seed(heads)
    lam = 0.3
    model = CSRA(TinyBackbone(16), C, TEMPERATURES[heads], lam).eval()
    for h in model.classifier:  # weights of varied norms, so the normalization matters
        h.head.weight.data.mul_(torch.rand(C, 1, 1, 1) * 3 + 0.1)
    fmap = torch.randn(3, 16, 3, 4) * 2
    want = reference(fmap, [h.head.weight.detach() for h in model.classifier], TEMPERATURES[heads], lam)
    with torch.no_grad():
        got = model.classifier(fmap)
        per_head = sum(h(fmap) for h in model.classifier)  # one head at a time, as the official
        full = model(torch.randn(3, 3, 12, 16))
    assert got.dtype == torch.float32 and got.shape == (3, C) and full.shape == (3, C)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5), (got.double() - want).abs().max()
    assert torch.allclose(per_head.double(), want, rtol=1e-5, atol=1e-5)


def test_max_pool_head_and_one_position():
    """T = 99 is the max over positions (not a softmax at 99); on a 1×1 map every head's
    logit is (1 + λ)·score."""
    torch.manual_seed(0)
    model = CSRA(TinyBackbone(8), C, (99,), 0.5)
    fmap = torch.randn(2, 8, 2, 2)
    w = model.classifier[0].head.weight.detach().reshape(C, 8)
    score = torch.einsum("cd,bdp->bcp", w, fmap.reshape(2, 8, 4)) / w.norm(dim=1)[:, None]
    with torch.no_grad():
        assert torch.allclose(model.classifier(fmap), score.mean(2) + 0.5 * score.amax(2), atol=1e-6)
        one = torch.randn(2, 8, 1, 1)
        s = torch.einsum("cd,bd->bc", w, one.flatten(1)) / w.norm(dim=1)
        model4 = CSRA(TinyBackbone(8), C, TEMPERATURES[4], 0.5)
        for h in model4.classifier:
            h.head.weight.data.copy_(model.classifier[0].head.weight)
        assert torch.allclose(model4.classifier(one), 4 * 1.5 * s, atol=1e-5)


def test_gradients_flow_through_the_norm_as_in_the_official_code():
    """The fused computation (all heads in one convolution) has the gradients of the
    official one (each head alone, its weight's norm taken at forward time)."""
    torch.manual_seed(1)
    model = CSRA(TinyBackbone(16), C, TEMPERATURES[4], 0.5)
    fmap = torch.randn(2, 16, 3, 3)

    def grads(fn):
        model.zero_grad()
        fn().pow(2).sum().backward()
        return [h.head.weight.grad.clone() for h in model.classifier]

    fused = grads(lambda: model.classifier(fmap))
    single = grads(lambda: sum(h(fmap) for h in model.classifier))
    for a, b in zip(fused, single):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def built(num_classes: int = SHAPES_CLASSES, **params) -> CSRA:
    """The plugin's model on a ResNet-18 (4 heads, λ 0.5 unless given)."""
    params = {"backbone": "resnet18", "heads": 4, "lam": 0.5, **params}
    return plugin.build(plugin.schema(**params), num_classes=num_classes)


def official_state(model: CSRA) -> dict:
    """``model``'s weights as the official ``ResNet_CSRA.state_dict()`` names them: the
    ResNet's own keys at the top level (no ``fc``: the official replaces it by an empty
    ``nn.Sequential``) and ``classifier.multi_head.<i>.head.weight``."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            out[k[len("backbone."):]] = v.clone()
        else:
            out["classifier.multi_head." + k[len("classifier."):]] = v.clone()
    return out


def test_official_checkpoints_load_and_give_the_same_logits(tmp_path, reg):
    import torchvision

    torch.manual_seed(0)
    model = built().eval()
    with torch.no_grad():  # weights that differ from a fresh model's
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = official_state(model)
    # the key layout of the official file: torchvision's ResNet without fc, plus the heads
    tv_keys = {k for k in torchvision.models.resnet18(weights=None).state_dict() if not k.startswith("fc.")}
    assert {k for k in state if not k.startswith("classifier.")} == tv_keys
    assert {k for k in state if k.startswith("classifier.")} == {
        f"classifier.multi_head.{i}.head.weight" for i in range(4)}
    assert state["classifier.multi_head.0.head.weight"].shape == (SHAPES_CLASSES, 512, 1, 1)
    bare, wrapped = tmp_path / "official.pth", tmp_path / "official_multi_gpu.pth"
    torch.save(state, bare)
    torch.save({"module." + k: v for k, v in state.items()}, wrapped)

    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
    for path in (bare, wrapped):
        fresh = built().eval()
        assert mlcore.load_weights(fresh, path) == OFFICIAL_LAYOUT
        with torch.no_grad():
            assert torch.equal(fresh(x), want)
    # through the config's model.weights
    cfg = tiny_config(tmp_path / "run", model={"name": "csra", "backbone": "resnet18", "heads": 4,
                                               "lam": 0.5, "weights": str(wrapped)},
                      dataset={"name": "shapes", "num_train": 8, "num_val": 4, "image_size": 32, "seed": 3})
    exp = mlcore.build(cfg, registry=reg)
    exp.model.eval()
    with torch.no_grad():
        assert torch.equal(exp.model(x), want)
    # mlcore's own names load as they are (no layout)
    own = tmp_path / "own.pth"
    torch.save(model.state_dict(), own)
    fresh = built()
    assert mlcore.load_weights(fresh, own) is None
    # another label set: the parameter and both shapes are named
    other = built(3)
    with pytest.raises(MlcoreError, match=r"classifier\.0\.head\.weight: checkpoint has shape "
                                          r"\(10, 512, 1, 1\), the model \(3, 512, 1, 1\)"):
        mlcore.load_weights(other, bare)
    # another head count: the heads the model lacks are named, and through a config, the setting
    one_head = built(heads=1)
    with pytest.raises(MlcoreError, match=r"classifier\.1\.head\.weight"):
        mlcore.load_weights(one_head, wrapped)
    with pytest.raises(MlcoreError,
                       match=r"(?s)number of heads than this config's heads: 1\?.*classifier\.1\."):
        built(heads=1, weights=str(wrapped))
    # a file without the BatchNorms' num_batches_tracked (torch < 0.4.1, or stripped) loads as
    # the official load_state_dict loads it
    old = tmp_path / "no_counters.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    fresh = built().eval()
    assert mlcore.load_weights(fresh, old) == OFFICIAL_LAYOUT
    with torch.no_grad():
        assert torch.equal(fresh(x), want)


def test_trains_from_a_config(tmp_path, reg):
    cfg = tiny_config(tmp_path / "run",
                      model={"name": "csra", "backbone": "resnet18", "heads": 2, "lam": 0.2},
                      data={"scale_size": 32, "crop_size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]},
                      optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                                 "backbone_lr_mult": 0.1},
                      scheduler={"name": "step", "step_size": 5, "warmup_epochs": 1, "warmup_factor": 1e-6},
                      dataset={"name": "shapes", "num_train": 16, "num_val": 8, "image_size": 32, "seed": 3},
                      train={"epochs": 1, "batch_size": 8, "num_workers": 0, "seed": 0, "log_every": 2})
    exp = mlcore.build(cfg, registry=reg)
    assert isinstance(exp.model, CSRA) and len(exp.model.classifier) == 2
    assert [h.temperature for h in exp.model.classifier] == [1, 99]
    assert exp.model.classifier[0].head.weight.shape == (len(exp.classes), 512, 1, 1)
    summary = exp.fit()
    assert summary["reason"] == "finished"
    metrics = exp.evaluate("val")
    assert isinstance(metrics["mAP"], float) and 0 <= metrics["mAP"] <= 1


@pytest.mark.parametrize("heads", [0, 3, 5, 7, 16])
def test_unsupported_head_counts_are_config_errors(tmp_path, reg, heads):
    cfg = tiny_config(tmp_path / "run", model={"name": "csra", "backbone": "resnet18", "heads": heads})
    with pytest.raises(ConfigError, match=r"model\.heads: must be one of 1, 2, 4, 6, 8"):
        mlcore.load_config(cfg, registry=reg)


def test_negative_lambda_and_unknown_keys_are_config_errors(tmp_path, reg):
    cfg = tiny_config(tmp_path / "run", model={"name": "csra", "backbone": "resnet18", "lam": -1,
                                               "num_heads": 4})
    with pytest.raises(ConfigError) as err:
        mlcore.load_config(cfg, registry=reg)
    assert "model.lam: must be >= 0" in str(err.value)
    assert "model.num_heads: unknown key" in str(err.value)


def test_the_recipes_load(reg):
    cfg = mlcore.load_config(ROOT / "configs" / "coco_csra.yaml", registry=reg)
    assert (cfg.model.name, cfg.model.cfg.backbone, cfg.model.cfg.heads, cfg.model.cfg.lam) == (
        "csra", "resnet101", 4, 0.5)
    assert cfg.model.cfg.pretrained == "initmodels/resnet101-5d3b4d8f.pth" and cfg.model.cfg.freeze == "none"
    assert (cfg.data.mean, cfg.data.std) == ([0, 0, 0], [1, 1, 1])
    assert (cfg.data.scale_size, cfg.data.crop_size) == (448, 448)
    opt, sched = cfg.optimizer, cfg.scheduler
    assert (opt.name, opt.cfg.lr, opt.common.backbone_lr_mult) == ("sgd", 0.1, 0.1)
    assert (opt.cfg.momentum, opt.cfg.weight_decay) == (0.9, 1e-4)
    assert (sched.name, sched.cfg.milestones, sched.cfg.gamma) == ("multistep", [3, 8, 13, 18, 23], 0.1)
    assert (sched.common.warmup_epochs, sched.common.warmup_factor) == (2, 1e-6)
    assert (cfg.train.epochs, cfg.train.batch_size) == (30, 16)
    assert "early_stop" in cfg.disabled_hooks


def test_the_voc2007_recipe_composes_and_loads_once_its_dataset_exists(reg):
    from mlcore.config import compose

    data, _, _ = compose(ROOT / "configs" / "voc2007_csra.yaml")
    assert data["dataset"] == {"name": "voc2007", "root": "data/VOC2007",
                               "difficult": {"trainval": "drop", "test": "ignore"}}
    assert (data["model"]["heads"], data["model"]["lam"], data["scheduler"]["milestones"]) == (
        1, 0.1, [2, 6, 10, 14, 18, 22, 26])
    assert (data["data"]["mean"], data["data"]["std"]) == ([0, 0, 0], [1, 1, 1])
    if reg.record_of("dataset", "voc2007") is None:
        pytest.skip("the voc2007 dataset plugin does not exist yet: configs/voc2007_csra.yaml not checked")
    voc = mlcore.load_config(ROOT / "configs" / "voc2007_csra.yaml", registry=reg)
    assert (voc.dataset.name, voc.model.cfg.heads, voc.model.cfg.lam, voc.scheduler.cfg.milestones) == (
        "voc2007", 1, 0.1, [2, 6, 10, 14, 18, 22, 26])
    assert (voc.data.train_split, voc.data.val_split, voc.data.mean) == ("trainval", "test", [0, 0, 0])


def test_freeze_reaches_the_backbone_and_the_plugin_module_is_light():
    import subprocess
    import sys

    model = built(freeze="all_but_last")
    assert not any(p.requires_grad for p in model.backbone.layer3.parameters())
    assert all(p.requires_grad for p in model.backbone.layer4.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    code = "import sys, mlcore_builtins.csra; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
