"""The official SSGRL head computation, written the way the official code writes it
(repeat, transpose, one big B·P·C×1024 tensor), on the weights of an mlcore SSGRL.

Used by the tests (same outputs as mlcore's lean computation) and by
``benchmarks/ssgrl_head.py`` (the baseline it is measured against).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def official_head(model, fmap: torch.Tensor, reset_gate: str = "official") -> torch.Tensor:
    """Logits from a (pooled, square) feature map ``[B, D, s, s]``."""
    sem, ggnn = model.word_semantic, model.graph_net
    words = model.words
    b, d, _, s = fmap.shape
    c = words.shape[0]
    k = sem.fc_1.out_features
    img = torch.transpose(torch.transpose(fmap, 1, 2), 2, 3)
    f_wh = sem.fc_1(img.contiguous().view(b * s * s, -1)).view(b * s * s, 1, -1).repeat(1, c, 1)
    f_wd = sem.fc_2(words).view(1, c, k).repeat(b * s * s, 1, 1)
    lb = sem.fc_3(torch.tanh(f_wh * f_wd).view(-1, k))
    coef = sem.fc_a(lb)
    coef = torch.transpose(torch.transpose(coef.view(b, s, s, c), 2, 3), 1, 2).view(b, c, -1)
    coef = F.softmax(coef, dim=2).view(b, c, s, s)
    coef = torch.transpose(torch.transpose(coef, 1, 2), 2, 3)
    coef = coef.view(b, s, s, c, 1).repeat(1, 1, 1, 1, d)
    feat = img.view(b, s, s, 1, d).repeat(1, 1, 1, c, 1) * coef
    graph_in = torch.sum(torch.sum(feat, 1), 1)

    in_m = model.in_matrix.repeat(b, 1).view(b, c, -1)
    out_m = model.out_matrix.repeat(b, 1).view(b, c, -1)
    nodes = graph_in.view(b, c, d)
    reset_u = ggnn.fc_eq3_u if reset_gate == "official" else ggnn.fc_eq4_u
    for _ in range(ggnn.time_step):
        av = torch.cat((torch.bmm(in_m, nodes), torch.bmm(out_m, nodes)), 2).view(b * c, -1)
        flat = nodes.view(b * c, -1)
        zv = torch.sigmoid(ggnn.fc_eq3_w(av) + ggnn.fc_eq3_u(flat))
        rv = torch.sigmoid(ggnn.fc_eq4_w(av) + reset_u(flat))
        hv = torch.tanh(ggnn.fc_eq5_w(av) + ggnn.fc_eq5_u(rv * flat))
        flat = (1 - zv) * flat + zv * hv
        nodes = flat.view(b, c, -1)
    out = torch.cat((nodes.view(b * c, -1), graph_in.view(-1, d)), 1)
    out = torch.tanh(model.fc_output(out)).contiguous().view(b, c, -1)
    return torch.sum(out * model.classifiers.weight, 2) + model.classifiers.bias
