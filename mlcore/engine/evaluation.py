"""Running a model over a dataset and scoring it with the metric plugins."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch

from ..data.images import BadImageError
from .device import Normalizer
from .distributed import Dist, gather_rows
from .loading import make_loader


@torch.inference_mode()
def infer(model: torch.nn.Module, dataset, *, device: torch.device, normalize: Normalizer,
          batch_size: int, num_workers: int, metrics: Sequence = (), skip_bad: bool = False,
          dist: Dist | None = None, autocast: Callable | None = None) -> tuple[torch.Tensor, dict]:
    """Probabilities for every sample of ``dataset`` (N×C, dataset order) and the metrics.

    Under torch.distributed each rank scores its share and the rows are gathered, so the
    metrics see exactly the N samples, once each, on every rank. Each metric is reset,
    updated with all probabilities and targets, and computed; their dicts are merged. An
    unreadable image is an error naming it — every sample must be scored — unless
    ``skip_bad``: then it is left out of the metrics, its row of scores is NaN, and
    ``num_skipped_images`` counts such images.
    """
    d = dist or Dist()
    loader, _ = make_loader(dataset, batch_size=batch_size, num_workers=num_workers, seed=0, shuffle=False,
                            pin_memory=device.type == "cuda", persistent=False, rank=d.rank, world=d.world)
    was_training = model.training
    model.eval()
    scores, targets, indices, failed = [], [], [], []
    try:
        for images, target, bad, index in loader:
            with autocast() if autocast is not None else contextlib.nullcontext():
                logits = model(normalize(images.to(device, non_blocking=True)))
            probs = torch.sigmoid(logits.float()).cpu()
            broken = torch.tensor([bool(b) for b in bad])
            if broken.any():
                if not skip_bad:
                    raise BadImageError(next(b for b in bad if b), "cannot be decoded; evaluation scores every image "
                                                                  "(data.on_bad_image: skip leaves such images out)")
                failed += [b for b in bad if b]
                probs[broken] = float("nan")
            scores.append(probs)
            targets.append((target > 0).to(torch.int8) - (target < 0).to(torch.int8))  # 1, 0, -1: a byte each
            indices.append(index)
    finally:
        model.train(was_training)
    c = len(dataset.classes)
    def cat(xs: list, shape: tuple, dtype=torch.float32) -> torch.Tensor:
        if len(xs) == 1:
            return xs[0]
        return torch.cat(xs) if xs else torch.zeros(shape, dtype=dtype)

    scores_all, targets_all = gather_rows(cat(indices, (0,)).long(), [cat(scores, (0, c)),
                                                                      cat(targets, (0, c), torch.int8)],
                                          len(dataset), d)
    del scores, targets
    keep = ~torch.isnan(scores_all).any(1)
    kept = (scores_all, targets_all) if bool(keep.all()) else (scores_all[keep], targets_all[keep])  # no copy
    result: dict = {}
    for m in metrics:
        m.reset()
        m.update(*kept)
        result.update(m.compute())
    del kept
    if skip_bad:
        skipped = int((~keep).sum())
        result["num_skipped_images"] = skipped
        if skipped and d.is_main:
            where = f", e.g. {failed[0]!r}" if failed else ""
            warnings.warn(f"{skipped} unreadable image(s) left out of the evaluation{where}", stacklevel=2)
    return scores_all, result
