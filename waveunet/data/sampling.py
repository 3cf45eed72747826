"""The training stream: which example every rank draws at every step, reproducibly.

How seeding works
-----------------
The training stream is the sequence of examples ``0, 1, 2, ...``; example ``n`` of a
:class:`~waveunet.data.excerpts.TrainingExcerpts` is drawn from ``numpy.random.default_rng([seed, n])``
and from nothing else. Epoch ``e`` is the slice ``e * epoch_size ... (e + 1) * epoch_size - 1``.

:class:`StreamSampler` deals that slice out to the ranks of a DistributedDataParallel job like
cards: rank ``r`` of ``w`` gets positions ``r, r + w, r + 2w, ...``. With a per-rank batch of
``b``, global step ``k`` of the epoch therefore trains on examples
``e * epoch_size + k*b*w ... e * epoch_size + (k+1)*b*w - 1`` in total, whatever the number of
DataLoader workers, and the same examples for any ``w`` and ``b`` with the same global batch ``b*w``.

Hence:

- DataLoader workers need no seeding of their own (``worker_init_fn`` is unnecessary): the example
  index carries all the randomness;
- the sampler's epoch is read in the main process each time iteration starts, so
  ``sampler.set_epoch(e)`` works with ``persistent_workers=True`` too;
- to resume after ``k`` completed steps of epoch ``e``, call ``sampler.set_epoch(e, start=k * b)``
  (``b`` = per-rank batch): the stream continues exactly where it stopped, with no examples drawn
  twice or skipped and without replaying the skipped ones.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from ..errors import WaveUNetError


class StreamSampler(Sampler[int]):
    """Indices into the training stream for one rank and one epoch.

    Args:
        epoch_size: examples per epoch over all ranks; each rank gets ``epoch_size // world_size``
            (the remainder is dropped so that every rank takes the same number of steps).
        rank, world_size: this process's place in the job (``torch.distributed`` rank and world size).
    """

    def __init__(self, epoch_size: int, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise WaveUNetError(f"rank {rank} is not in a job of {world_size} processes")
        if epoch_size < world_size:
            raise WaveUNetError(f"epoch size {epoch_size} is smaller than the {world_size} processes sharing it")
        self.epoch_size, self.rank, self.world_size = int(epoch_size), int(rank), int(world_size)
        self.per_rank = self.epoch_size // self.world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Draw epoch ``epoch`` next, beginning with this rank's ``start``-th example of it."""
        if not 0 <= start <= self.per_rank:
            raise WaveUNetError(f"cannot start at example {start} of an epoch of {self.per_rank} per process")
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self) -> Iterator[int]:
        first = self.epoch * self.epoch_size + self.rank
        return iter(range(first + self.start * self.world_size, first + self.per_rank * self.world_size, self.world_size))

    def __len__(self) -> int:
        return self.per_rank - self.start
