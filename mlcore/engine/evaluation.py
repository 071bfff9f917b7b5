"""Running a model over a dataset and scoring it with the metric plugins."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from ..data.images import BadImageError
from .device import Normalizer
from .loading import make_loader


@torch.inference_mode()
def infer(model: torch.nn.Module, dataset, *, device: torch.device, normalize: Normalizer,
          batch_size: int, num_workers: int, metrics: Sequence = (), skip_bad: bool = False
          ) -> tuple[torch.Tensor, dict]:
    """Probabilities for every sample of ``dataset`` (N×C, dataset order) and the metrics.

    Each metric is reset, updated batch by batch with probabilities and targets, and
    computed; their result dicts are merged. An unreadable image is an error naming it —
    every sample must be scored — unless ``skip_bad``: then it is left out of the
    metrics, its row of scores is NaN, and ``num_skipped_images`` counts such images.
    """
    loader, _ = make_loader(dataset, batch_size=batch_size, num_workers=num_workers, seed=0,
                            shuffle=False, pin_memory=device.type == "cuda", persistent=False)
    was_training = model.training
    model.eval()
    for m in metrics:
        m.reset()
    out = []
    skipped = []
    try:
        for images, targets, bad in loader:
            failed = [b for b in bad if b]
            if failed and not skip_bad:
                raise BadImageError(failed[0], "cannot be decoded; evaluation scores every image "
                                               "(data.on_bad_image: skip leaves such images out)")
            logits = model(normalize(images.to(device, non_blocking=True)))
            probs = torch.sigmoid(logits.float())
            targets = targets.to(device)
            if failed:
                keep = torch.tensor([not b for b in bad], device=device)
                skipped += failed
                probs = torch.where(keep[:, None], probs, torch.full_like(probs, float("nan")))
                for m in metrics:
                    m.update(probs[keep], targets[keep])
            else:
                for m in metrics:
                    m.update(probs, targets)
            out.append(probs.cpu())
    finally:
        model.train(was_training)
    scores = torch.cat(out) if out else torch.zeros(0, len(dataset.classes))
    result: dict = {}
    for m in metrics:
        result.update(m.compute())
    if skip_bad:
        result["num_skipped_images"] = len(skipped)
        if skipped:
            warnings.warn(f"{len(skipped)} unreadable image(s) left out of the evaluation, e.g. {skipped[0]!r}",
                          stacklevel=2)
    return scores, result
