"""Each loss against its formula written out element by element, gradients included."""
from __future__ import annotations

import math

import pytest
import torch

import mlcore


def sig(x):
    return 1 / (1 + math.exp(-x))


def elementwise(fn, logits, targets):
    """Sum of fn(x, y) over entries, built from scalar tensors (autograd gives its gradient)."""
    total = 0
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            total = total + fn(logits[i, j], float(targets[i, j]))
    return total


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(4, 5, generator=g) * 2).requires_grad_(True)
    y = (torch.rand(4, 5, generator=g) < 0.4).float()
    return x, y


def check(loss, reference, x, y):
    got = loss(x, y)
    (gx,) = torch.autograd.grad(got, x)
    want = reference(x, y)
    (wx,) = torch.autograd.grad(want, x)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5, abs=1e-6)
    assert torch.allclose(gx, wx, rtol=1e-4, atol=1e-6)


def test_bce_with_pos_weight():
    x, y = data()
    w = [1.0, 2.0, 0.5, 3.0, 1.0]
    loss = mlcore.create("loss", "bce", num_classes=5, pos_weight=w)

    def ref(x, y):
        def f(j):
            return lambda xi, yi: -(w[j] * yi * torch.log(torch.sigmoid(xi)) + (1 - yi) * torch.log(1 - torch.sigmoid(xi)))
        total = sum(f(j)(x[i, j], float(y[i, j])) for i in range(4) for j in range(5))
        return total / 20

    check(loss, ref, x, y)
    with pytest.raises(mlcore.ConfigError, match="3 weights given for 5 classes"):
        mlcore.create("loss", "bce", num_classes=5, pos_weight=[1, 2, 3])


def test_focal():
    x, y = data(1)
    loss = mlcore.create("loss", "focal", gamma=2.0, alpha=0.25)

    def f(xi, yi):
        p = torch.sigmoid(xi)
        pt = p if yi == 1 else 1 - p
        at = 0.25 if yi == 1 else 0.75
        return -at * (1 - pt) ** 2 * torch.log(pt)

    check(loss, lambda x, y: elementwise(f, x, y) / 20, x, y)


@pytest.mark.parametrize("no_grad", [False, True])
def test_asymmetric_loss(no_grad):
    x, y = data(2)
    loss = mlcore.create("loss", "asl", gamma_neg=4, gamma_pos=1, clip=0.05, no_grad_focusing=no_grad)

    def f(xi, yi):
        p = torch.sigmoid(xi)
        if yi == 1:
            w = (1 - p) ** 1
            base = torch.log(p.clamp(min=1e-8))
        else:
            pm = (1 - p + 0.05).clamp(max=1)  # the probability margin shifts negatives
            w = (1 - pm) ** 4
            base = torch.log(pm.clamp(min=1e-8))
        return -(base * (w.detach() if no_grad else w))

    check(loss, lambda x, y: elementwise(f, x, y), x, y)


def test_tencent_weights_decay_and_reset():
    x, y = data(3)
    loss = mlcore.create("loss", "tencent", num_classes=5)
    for t in (1, 2, 3):
        pos_r = max(0.01, math.log10(10 / (0.01 + t)))
        neg_r = max(0.01, math.log10(10 / (8 + t)))

        def f(xi, yi):
            p = torch.sigmoid(xi)
            r = pos_r if yi == 1 else neg_r
            return -r * (12.0 * yi * torch.log(p) + (1 - yi) * torch.log(1 - p))

        check(loss, lambda x, y: elementwise(f, x, y) / 20, x, y)  # the same label set: t grows
    state = loss.state_dict()
    assert state["t"] == 3
    y2 = y.clone()
    y2[:, 0] = 1 - y2[:, 0].max()  # another set of present labels resets t
    loss(x, y2)
    assert loss.state_dict()["t"] == 1
    loss.load_state_dict(state)
    assert loss.state_dict()["t"] == 3


def partial(seed=5):
    """Logits and targets with some entries unknown (-1), one row all unknown."""
    x, y = data(seed)
    g = torch.Generator().manual_seed(seed + 100)
    y[torch.rand(4, 5, generator=g) < 0.3] = -1
    y[3] = -1
    return x, y


def known_only(f, mean):
    """An element-wise loss that skips unknown entries; ``mean``: divided by their count."""
    def ref(x, y):
        total = elementwise(lambda xi, yi: 0 * xi if yi < 0 else f(xi, yi), x, y)
        return total / int((y >= 0).sum()) if mean else total
    return ref


@pytest.mark.parametrize("name", ["bce", "focal", "asl", "tencent"])
def test_unknown_targets_are_left_out_of_every_builtin_loss(name):
    x, y = partial()
    assert (y < 0).sum() >= 5
    loss = mlcore.create("loss", name, num_classes=5)
    assert loss.handles_unknown

    def bce(xi, yi, pw=1.0):
        p = torch.sigmoid(xi)
        return -(pw * yi * torch.log(p) + (1 - yi) * torch.log(1 - p))

    def focal(xi, yi):
        p = torch.sigmoid(xi)
        pt, at = (p, 0.25) if yi == 1 else (1 - p, 0.75)
        return -at * (1 - pt) ** 2 * torch.log(pt)

    def asl(xi, yi):  # the defaults: γ− 4, γ+ 1, clip 0.05
        p = torch.sigmoid(xi)
        if yi == 1:
            return -((1 - p) * torch.log(p.clamp(min=1e-8)))
        pm = (1 - p + 0.05).clamp(max=1)
        return -((1 - pm) ** 4 * torch.log(pm.clamp(min=1e-8)))

    present = (y == 1).any(0)  # the tencent set of present labels: known positives only
    assert not present.all()
    pos_r, neg_r = math.log10(10 / 1.01), max(0.01, math.log10(10 / 9))

    def tencent(xi, yi):
        return (pos_r if yi == 1 else neg_r) * bce(xi, yi, 12.0)

    ref = {"bce": known_only(bce, True), "focal": known_only(focal, True), "asl": known_only(asl, False),
           "tencent": known_only(tencent, True)}[name]
    check(loss, ref, x, y)
    (grad,) = torch.autograd.grad(loss(x, y), x)
    assert torch.all(grad[y < 0] == 0)  # an unknown entry gets no gradient
