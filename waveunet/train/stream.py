"""Training batches as a reproducible stream.

The trainer asks for "the batches of epoch ``e`` from step ``k`` on, ``b`` examples per process".
If the answer depends on nothing else (not on what was drawn before, nor on worker processes), an
interrupted run resumes exactly where it stopped by asking again for the same ``(e, k, b)``.

:class:`IndexedBatches` gives that for any dataset whose example ``n`` is a pure function of ``n``
(:class:`waveunet.data.excerpts.TrainingExcerpts` is one; see :mod:`waveunet.data.sampling`): it
deals epoch ``e`` out to the ranks with a :class:`~waveunet.data.sampling.StreamSampler`. A task
with other needs implements :class:`BatchStream` itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.sampling import StreamSampler


class BatchStream(Protocol):
    def batches(self, epoch: int, start: int, batch_size: int) -> Iterable:
        """This process's batches of ``batch_size`` examples for steps ``start, start + 1, ...`` of
        ``epoch`` (``epoch_size`` steps in all)."""


class IndexedBatches:
    """Batches of a stream-indexed dataset for one process of a (possibly distributed) job.

    Epoch ``e`` with a per-process batch ``b`` is the slice ``e * S ... (e + 1) * S - 1`` of the
    stream, ``S = epoch_size * b * world_size``. Because epoch numbers keep counting across the
    fine-tuning round while its batch is larger, its epochs draw examples no earlier epoch drew.

    Args:
        dataset: map-style dataset; ``dataset[n]`` must depend on ``n`` alone.
        epoch_size: steps per epoch.
        rank, world_size: this process's place in the job.
        workers: DataLoader worker processes.
        pin_memory: pin batches for faster host-to-GPU copies.
    """

    def __init__(self, dataset: Dataset, epoch_size: int, rank: int = 0, world_size: int = 1, workers: int = 0,
                 pin_memory: bool = False):
        self.dataset, self.epoch_size = dataset, epoch_size
        self.rank, self.world_size = rank, world_size
        self.workers, self.pin_memory = workers, pin_memory
        self._loader: DataLoader | None = None
        self._sampler: StreamSampler | None = None
        self._batch_size = 0

    def batches(self, epoch: int, start: int, batch_size: int) -> Iterable:
        if self._loader is None or batch_size != self._batch_size:
            # One loader per batch size, so worker processes persist across epochs.
            self._sampler = StreamSampler(self.epoch_size * batch_size * self.world_size, self.rank, self.world_size)
            self._loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self._sampler, drop_last=True,
                                      num_workers=self.workers, persistent_workers=self.workers > 0,
                                      pin_memory=self.pin_memory)
            self._batch_size = batch_size
        self._sampler.set_epoch(epoch, start=start * batch_size)
        return self._loader


def to_device(batch, device: torch.device):
    """A batch (tensor, or tuple/list/dict of them) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch
