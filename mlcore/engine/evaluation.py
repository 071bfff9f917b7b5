"""Running a model over a dataset and scoring it with the metric plugins."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.images import BadImageError
from .device import Normalizer
from .loading import make_loader


@torch.inference_mode()
def infer(model: torch.nn.Module, dataset, *, device: torch.device, normalize: Normalizer,
          batch_size: int, num_workers: int, metrics: Sequence = ()) -> tuple[torch.Tensor, dict]:
    """Probabilities for every sample of ``dataset`` (N×C, dataset order) and the metrics.

    Each metric is reset, updated batch by batch with probabilities and targets, and
    computed; their result dicts are merged. An unreadable image is an error here:
    skipping evaluation samples would change the score.
    """
    loader, sampler = make_loader(dataset, batch_size=batch_size, num_workers=num_workers, seed=0,
                                  shuffle=False, pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    for m in metrics:
        m.reset()
    out = []
    try:
        for images, targets, bad in loader:
            failed = [b for b in bad if b]
            if failed:
                raise BadImageError(failed[0], "cannot be decoded; evaluation needs every image")
            logits = model(normalize(images.to(device, non_blocking=True)))
            probs = torch.sigmoid(logits.float())
            for m in metrics:
                m.update(probs, targets.to(device))
            out.append(probs.cpu())
    finally:
        model.train(was_training)
    scores = torch.cat(out) if out else torch.zeros(0, len(dataset.classes))
    result: dict = {}
    for m in metrics:
        result.update(m.compute())
    return scores, result
