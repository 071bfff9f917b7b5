"""Feeding datasets to the model: reproducible order and augmentation, bad-image handling.

* :class:`EpochSampler` orders the samples by a permutation that is a function of
  ``(seed, epoch)`` only, and can start part-way through an epoch — so a resumed run sees
  exactly the batches an uninterrupted one would.
* :class:`SampleReader` seeds torch's generator per sample from ``(seed, epoch, index)``
  before the dataset's transform runs, so augmentation does not depend on the worker
  count or on where a run was resumed; and it replaces an undecodable image by the next
  one, reporting its path with the batch (the main process warns, counts or stops).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..data.images import BadImageError


def mixed_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (e.g. seed, epoch, index)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)``: a seeded permutation (or the plain order), from ``start``.

    With ``world`` > 1 each rank takes every ``world``-th index of that order, from
    ``rank``. Training (``pad``) wraps the order around so every rank has as many samples
    (the ranks must take as many steps); evaluation does not pad, so that exactly the N
    samples are scored once each.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1, pad: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world, self.pad = rank, world, pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's ``start``-th sample (mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's indices for the epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world > 1:
            if self.pad and self.n % self.world:
                order += order[: self.world - self.n % self.world]
            order = order[self.rank::self.world]
        return order

    def per_rank(self) -> int:
        if self.world == 1:
            return self.n
        return -(-self.n // self.world) if self.pad else len(range(self.rank, self.n, self.world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.order()[self.start:]:
            yield self.epoch, i

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)


class SampleReader(torch.utils.data.Dataset):
    """Wraps a dataset: ``reader[(epoch, i)] -> (image, target, bad_path, i)``.

    ``bad_path`` is ``""`` normally; when image ``i`` cannot be decoded, the next readable
    sample is returned instead and ``bad_path`` names the file that failed.
    """

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        bad = ""
        n = len(self.dataset)
        for attempt in range(min(n, 16)):
            j = (index + attempt) % n
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(mixed_seed(self.seed, epoch, j))
                    image, target = self.dataset[j]
                return image, target, bad, index
            except BadImageError as exc:
                bad = bad or exc.path
        tried = min(n, 16)
        raise BadImageError(bad, "it could not be read" + (f", nor the {tried - 1} sample(s) after it" if tried > 1 else ""))


def make_loader(dataset, *, batch_size: int, num_workers: int, seed: int, shuffle: bool,
                pin_memory: bool, persistent: bool = True, rank: int = 0, world: int = 1
                ) -> tuple[torch.utils.data.DataLoader, EpochSampler]:
    """A loader over ``SampleReader(dataset)``; ``persistent`` keeps its workers between
    epochs (the epoch reaches them through the sampler's indices, not dataset state).
    Training loaders (``shuffle``) pad the ranks' shares to equal length; evaluation ones
    do not."""
    sampler = EpochSampler(len(dataset), seed, shuffle, rank, world, pad=shuffle)
    loader = torch.utils.data.DataLoader(
        SampleReader(dataset, seed), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, drop_last=False, persistent_workers=persistent and num_workers > 0,
    )
    return loader, sampler
