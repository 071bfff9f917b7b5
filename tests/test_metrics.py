"""The map and prf metrics against direct, loop-by-loop formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mlcore


def reference_ap(scores, labels, interpolated=True):
    """AP of one label the slow way: one threshold per distinct score."""
    npos = sum(labels)
    if npos == 0:
        return None
    points = []  # (recall, precision) at each threshold, high to low
    for t in sorted(set(scores), reverse=True):
        chosen = [y for s, y in zip(scores, labels) if s >= t]
        points.append((sum(chosen) / npos, sum(chosen) / len(chosen)))
    ap, prev_r = 0.0, 0.0
    for i, (r, p) in enumerate(points):
        best = max(q for _, q in points[i:]) if interpolated else p
        ap += (r - prev_r) * best
        prev_r = r
    return ap


def reference_prf(pred, target):
    C = pred.shape[1]
    nc = [sum(pred[i, c] * target[i, c] for i in range(len(pred))) for c in range(C)]
    np_ = [sum(pred[i, c] for i in range(len(pred))) for c in range(C)]
    ng = [sum(target[i, c] for i in range(len(pred))) for c in range(C)]
    cp = sum(a / b if b else 0 for a, b in zip(nc, np_)) / C
    cr = sum(a / b if b else 0 for a, b in zip(nc, ng)) / C
    op = sum(nc) / sum(np_) if sum(np_) else 0
    orr = sum(nc) / sum(ng) if sum(ng) else 0
    f = lambda p, r: 2 * p * r / (p + r) if p + r else 0  # noqa: E731
    return {"cp": cp, "cr": cr, "cf1": f(cp, cr), "op": op, "or": orr, "of1": f(op, orr)}


@pytest.mark.parametrize("interpolated", [True, False])
def test_map_matches_the_direct_formula_with_ties(interpolated):
    g = torch.Generator().manual_seed(0)
    n, c = 60, 5
    scores = (torch.rand(n, c, generator=g) * 8).round() / 8  # many ties
    targets = (torch.rand(n, c, generator=g) < 0.3).float()
    targets[:, 4] = 0  # a label with no positive
    m = mlcore.create("metric", "map", num_classes=c, interpolated=interpolated)
    m.update(scores[:25], targets[:25])
    m.update(scores[25:], targets[25:])
    out = m.compute()
    want = [reference_ap(scores[:, j].tolist(), targets[:, j].tolist(), interpolated) for j in range(c)]
    assert out["ap_list"][4] is None and out["num_labels_without_positives"] == 1
    for got, ref in zip(out["ap_list"][:4], want[:4]):
        assert got == pytest.approx(ref, abs=1e-12)
    assert out["mAP"] == pytest.approx(sum(want[:4]) / 4, abs=1e-12)


def test_map_does_not_depend_on_sample_order():
    g = torch.Generator().manual_seed(1)
    scores = (torch.rand(200, 3, generator=g) * 4).round() / 4
    targets = (torch.rand(200, 3, generator=g) < 0.4).float()
    perm = torch.randperm(200, generator=g)
    a = mlcore.create("metric", "map", num_classes=3)
    b = mlcore.create("metric", "map", num_classes=3)
    a.update(scores, targets)
    b.update(scores[perm], targets[perm])
    assert a.compute()["ap_list"] == b.compute()["ap_list"]


def test_map_perfect_and_reset():
    m = mlcore.create("metric", "map", num_classes=2)
    m.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert m.compute()["mAP"] == 1.0
    m.reset()
    m.update(torch.tensor([[0.1, 0.9]]), torch.tensor([[1.0, 0.0]]))
    assert m.compute()["ap_list"] == [1.0, None]
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        m.update(torch.zeros(2, 3), torch.zeros(2, 3))


def test_prf_matches_the_seed_formulas():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(40, 6, generator=g)
    targets = (torch.rand(40, 6, generator=g) < 0.3).float()
    m = mlcore.create("metric", "prf", num_classes=6, topk=2, threshold=0.6)
    m.update(scores, targets)
    out = m.compute()
    top = np.zeros((40, 6))
    for i, row in enumerate(scores.numpy()):
        top[i, np.argsort(-row)[:2]] = 1
    want_top = reference_prf(top, targets.numpy())
    want_thr = reference_prf((scores.numpy() > 0.6).astype(float), targets.numpy())
    for k in want_top:
        assert out[f"topk_{k}"] == pytest.approx(want_top[k], abs=1e-12)
        assert out[f"threshold_{k}"] == pytest.approx(want_thr[k], abs=1e-12)
    assert all(math.isfinite(v) for v in out.values())
    # the seed compares with ">": a probability exactly at the threshold is not predicted
    edge = mlcore.create("metric", "prf", num_classes=2, topk=1, threshold=0.5)
    edge.update(torch.tensor([[0.5, 0.2]]), torch.tensor([[1.0, 0.0]]))
    assert edge.compute()["threshold_op"] == 0.0 and edge.compute()["topk_op"] == 1.0
