"""The metrics' edge cases: nothing evaluated, unknown (-1) targets, ``zero_division``
against an element-wise transcription of the seed's formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mlcore
from mlcore.errors import MlcoreError

from conftest import tiny_config
from test_metrics import reference_ap, reference_prf

PRF = [f"{kind}_{k}" for kind in ("topk", "threshold") for k in ("cp", "cr", "cf1", "op", "or", "of1")]


# -- nothing evaluated --------------------------------------------------------------------
@pytest.mark.parametrize("zero_division", [0, 1])
def test_prf_and_map_on_zero_samples_are_nan_not_an_error(zero_division):
    c = 4
    prf = mlcore.create("metric", "prf", num_classes=c, **({"zero_division": 1} if zero_division else {}))
    m = mlcore.create("metric", "map", num_classes=c)
    for metric in (prf, m):  # compute() before any update(), then an empty batch
        first = metric.compute()
        metric.update(torch.zeros(0, c), torch.zeros(0, c))
        assert metric.compute().keys() == first.keys()
    for out in (prf.compute(), prf.__class__(c).compute()):
        assert sorted(out) == sorted(PRF)
        assert all(isinstance(v, float) and math.isnan(v) for v in out.values())
    out = m.compute()
    assert math.isnan(out["mAP"]) and math.isnan(out["mAP_noninterp"])
    assert out["ap_list"] == [None] * c and out["num_labels_without_positives"] == c
    # the same when every target is unknown: nothing known was evaluated
    prf.update(torch.rand(3, c), -torch.ones(3, c))
    m.update(torch.rand(3, c), -torch.ones(3, c))
    assert all(math.isnan(v) for v in prf.compute().values())
    assert math.isnan(m.compute()["mAP"]) and m.compute()["ap_list"] == [None] * c


def test_scoring_an_empty_split(tmp_path):
    """The engine's evaluation of a split with no sample: the metrics see zero rows."""
    from mlcore.data.dataset import ImageListDataset
    from mlcore.engine.device import Normalizer
    from mlcore.engine.evaluation import infer

    empty = ImageListDataset([], np.zeros((0, 3), dtype=np.uint8), ["cat", "dog", "fox"])
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    metrics = [mlcore.create("metric", "map", num_classes=3),
               mlcore.create("metric", "prf", num_classes=3)]
    scores, out = infer(model, empty, device=torch.device("cpu"), normalize=Normalizer([0.5] * 3, [0.5] * 3),
                        batch_size=4, num_workers=0, metrics=metrics)
    assert scores.shape == (0, 3)
    assert math.isnan(out["mAP"]) and out["ap_list"] == [None] * 3
    assert out["num_labels_without_positives"] == 3
    assert all(math.isnan(out[k]) for k in PRF)


# -- unknown targets ----------------------------------------------------------------------
def test_unknown_targets_are_skipped_by_map():
    g = torch.Generator().manual_seed(5)
    n, c = 50, 4
    scores = (torch.rand(n, c, generator=g) * 6).round() / 6
    targets = (torch.rand(n, c, generator=g) < 0.4).float()
    unknown = torch.rand(n, c, generator=g) < 0.25
    targets[unknown] = -1
    scores[unknown & (torch.arange(n)[:, None] % 2 == 0)] = 1.0  # unknowns scored above everything
    targets[:, 3][targets[:, 3] > 0] = -1  # a label whose positives are all unknown
    for interpolated in (True, False):
        m = mlcore.create("metric", "map", num_classes=c, interpolated=interpolated)
        m.update(scores[:20], targets[:20])
        m.update(scores[20:], targets[20:])
        out = m.compute()
        for j in range(c):
            keep = targets[:, j] >= 0
            want = reference_ap(scores[keep, j].tolist(), targets[keep, j].tolist(), interpolated)
            got = out["ap_list"][j]
            assert (got is None and want is None) or got == pytest.approx(want, abs=1e-12), (j, got, want)
        assert out["ap_list"][3] is None and out["num_labels_without_positives"] == 1


@pytest.mark.parametrize("zero_division", [0, 1])
def test_unknown_targets_are_skipped_by_prf(zero_division):
    g = torch.Generator().manual_seed(6)
    n, c = 40, 5
    scores = torch.rand(n, c, generator=g)
    targets = (torch.rand(n, c, generator=g) < 0.3).float()
    targets[torch.rand(n, c, generator=g) < 0.3] = -1
    m = mlcore.create("metric", "prf", num_classes=c, topk=2, threshold=0.5,
                      **({"zero_division": 1} if zero_division else {}))
    m.update(scores, targets)
    out = m.compute()
    top = np.zeros((n, c))
    for i, row in enumerate(scores.numpy()):
        top[i, np.argsort(-row)[:2]] = 1  # chosen among all labels …
    for kind, pred in (("topk", top), ("threshold", (scores.numpy() > 0.5).astype(float))):
        want = counted_prf(pred, targets.numpy(), zero_division)  # … counted on known entries only
        for k, v in want.items():
            assert out[f"{kind}_{k}"] == pytest.approx(v, abs=1e-12), (kind, k)
    from mlcore_builtins.metrics.metrics import prf  # the plain function, on 0/1 predictions

    direct = prf(torch.from_numpy(top), targets, zero_division)
    assert direct == pytest.approx(counted_prf(top, targets.numpy(), zero_division), abs=1e-12)


def counted_prf(pred, target, zero_division):
    """CP…OF1 with loops over the known entries only (target -1 is left out)."""
    n, c = pred.shape
    nc, np_, ng = [0] * c, [0] * c, [0] * c
    for i in range(n):
        for j in range(c):
            if target[i, j] < 0:
                continue
            np_[j] += pred[i, j]
            ng[j] += target[i, j]
            nc[j] += pred[i, j] * target[i, j]
    div = lambda a, b: a / b if b else zero_division  # noqa: E731
    f = lambda p, r: 2 * p * r / (p + r) if p + r else 0  # noqa: E731
    cp = sum(div(a, b) for a, b in zip(nc, np_)) / c
    cr = sum(div(a, b) for a, b in zip(nc, ng)) / c
    op, orr = div(sum(nc), sum(np_)), div(sum(nc), sum(ng))
    return {"cp": cp, "cr": cr, "cf1": f(cp, cr), "op": op, "or": orr, "of1": f(op, orr)}


# -- zero_division and the seed -----------------------------------------------------------
def seed_prf(conf, y, topk=None, threshold=None):
    """The seed's Topk/ThresholdAverageMeter, element by element: per-sample counts, then
    every per-class count clamped to eps before dividing (so 0/0 gives 1), OP/OR unclamped."""
    eps = np.finfo(np.float64).eps
    n, c = conf.shape
    right, pred, gt = [0.0] * c, [0.0] * c, [0.0] * c
    for i in range(n):
        chosen = (sorted(range(c), key=lambda j: -conf[i, j])[:topk] if topk
                  else [j for j in range(c) if conf[i, j] > threshold])
        for j in range(c):
            if y[i, j] == 1:
                gt[j] += 1
        for j in chosen:
            pred[j] += 1
            if y[i, j] == 1:
                right[j] += 1
    cp = sum(max(right[j], eps) / max(pred[j], eps) for j in range(c)) / c
    cr = sum(max(right[j], eps) / max(gt[j], eps) for j in range(c)) / c
    op, orr = sum(right) / sum(pred), sum(right) / sum(gt)
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    return {"cp": cp, "cr": cr, "cf1": f1(cp, cr), "op": op, "or": orr, "of1": f1(op, orr)}


def seed_like_data(seed):
    rng = np.random.default_rng(seed)
    n, c = 60, 8
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    targets[:, 0] = 0  # never present
    targets[:, 1] = 0  # never present and never predicted
    scores = rng.random((n, c)).astype(np.float32)
    scores[:, 1] = scores[:, 2] = rng.random(n).astype(np.float32) * 0.01  # never predicted, ranked last
    targets[:3, 2] = 1  # … though present
    return scores, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_division_1_reproduces_the_seed(seed):
    scores, targets = seed_like_data(seed)
    c = scores.shape[1]
    thr = (scores > 0.5).astype(float)
    assert not thr[:, 1].any() and not thr[:, 2].any() and not targets[:, 0].any()
    out = {}
    for zd in (0, 1):
        m = mlcore.create("metric", "prf", num_classes=c, topk=3, threshold=0.5, zero_division=zd)
        m.update(torch.from_numpy(scores[:25]), torch.from_numpy(targets[:25]))
        m.update(torch.from_numpy(scores[25:]), torch.from_numpy(targets[25:]))
        out[zd] = m.compute()
    want_seed = {f"topk_{k}": v for k, v in seed_prf(scores, targets, topk=3).items()}
    want_seed.update({f"threshold_{k}": v for k, v in seed_prf(scores, targets, threshold=0.5).items()})
    top = np.zeros_like(scores)
    for i, row in enumerate(scores):
        top[i, np.argsort(-row)[:3]] = 1
    want_zero = {f"topk_{k}": v for k, v in reference_prf(top.astype(float), targets.astype(float)).items()}
    want_zero.update({f"threshold_{k}": v for k, v in reference_prf(thr, targets.astype(float)).items()})
    for key in PRF:
        # the seed's eps clamp leaves eps/Np (< 3e-16) where mlcore has 0 correct / Np = 0
        assert out[1][key] == pytest.approx(want_seed[key], abs=1e-14), key
        assert out[0][key] == pytest.approx(want_zero[key], abs=1e-14), key
    # never predicted (1, 2) and never present (0, 1): the settings differ where they should
    assert out[1]["threshold_cp"] > out[0]["threshold_cp"] and out[1]["threshold_cr"] > out[0]["threshold_cr"]
    assert out[1]["topk_op"] == out[0]["topk_op"] and out[1]["threshold_or"] == out[0]["threshold_or"]


def test_zero_division_on_nothing_predicted_or_present():
    m0 = mlcore.create("metric", "prf", num_classes=2, threshold=0.9)
    m1 = mlcore.create("metric", "prf", num_classes=2, threshold=0.9, zero_division=1)
    for m in (m0, m1):
        m.update(torch.tensor([[0.2, 0.1], [0.3, 0.4]]), torch.zeros(2, 2))
    a, b = m0.compute(), m1.compute()
    # nothing above the threshold, no positive: every ratio is 0/0
    assert [a[f"threshold_{k}"] for k in ("cp", "cr", "cf1", "op", "or", "of1")] == [0.0] * 6
    assert [b[f"threshold_{k}"] for k in ("cp", "cr", "cf1", "op", "or", "of1")] == [1.0] * 6
    assert (a["topk_op"], b["topk_op"]) == (0.0, 0.0)  # top-k predicts, never correctly: a real 0


def test_zero_division_is_0_or_1():
    with pytest.raises(MlcoreError, match="zero_division.*must be 0 or 1, got 2"):
        mlcore.create("metric", "prf", num_classes=3, zero_division=2)
    cfg = tiny_config("unused", metrics=[{"name": "prf", "zero_division": 0.5}])
    with pytest.raises(MlcoreError, match="zero_division"):
        mlcore.build(cfg)
