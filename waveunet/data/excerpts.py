"""Training and validation examples cut from the decoded cache.

A Wave-U-Net in context mode maps an input of ``input_length`` samples to the centred
``output_length`` samples of its estimates. An example is therefore a mixture window of
``input_length`` samples and, for each target, the ``output_length`` samples at its centre::

    input   |<- left context ->|<------ output window ------>|<- right context ->|
    target                     |<------ output window ------>|

The output window lies inside the track; the context around it is real signal, padded with zeros only
where it reaches past the start or end of the track. Every dataset here returns
``(mixture [channels, input_length], targets [targets, channels, output_length])``, targets in the
order given (the model's ``config.sources``), which batches to the model's
``[batch, sources, channels, output_length]``.

Randomness (see :mod:`waveunet.data.sampling`): :class:`TrainingExcerpts` draws example ``n`` from a
generator seeded with ``(seed, n)`` alone, so an example does not depend on which worker or rank
makes it, nor on what was drawn before. Index ``n`` runs over the whole training stream, not one
epoch: :class:`~waveunet.data.sampling.StreamSampler` hands out ``epoch * epoch_size + position``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import WaveUNetError
from .augment import Augmentation, random_channel_swap, random_gains
from .cache import DecodedCache
from .targets import MIXTURE, build_targets, check_targets


class _Excerpts(Dataset):
    """What training and validation share: the cache, the targets and the window geometry."""

    def __init__(self, cache: DecodedCache, targets: Sequence[str], input_length: int, output_length: int):
        if not 0 < output_length <= input_length:
            raise WaveUNetError(f"{cache.description}: output length {output_length} must be in 1..input length {input_length}")
        check_targets(tuple(targets), cache.sources, cache.description)
        self.cache = cache
        self.targets = tuple(targets)
        self.input_length, self.output_length = int(input_length), int(output_length)
        #: samples of context before the output window (the rest, if odd, goes after it)
        self.left_context = (self.input_length - self.output_length) // 2

    def _mixture(self, track: int, output_start: int) -> torch.Tensor:
        """The dataset's mixture [channels, input_length] around the output window at ``output_start``."""
        return self.cache.window(track, output_start - self.left_context, self.input_length, (MIXTURE,))[0]

    def _targets(self, picks: list[tuple[int, int]], gains: np.ndarray) -> torch.Tensor:
        """Targets [K, channels, output_length]; source i is read at ``picks[i] = (track, output_start)``
        and scaled by ``gains[i]``."""
        sources = {
            source: self.cache.window(track, start, self.output_length, (source,))[0] * float(gain)
            for source, (track, start), gain in zip(self.cache.sources, picks, gains)
        }
        return build_targets(sources, self.targets)


class TrainingExcerpts(_Excerpts):
    """Random excerpts: a random track (uniformly), then a random output window in it (uniformly).

    ``len()`` is ``epoch_size``, but any index ``n >= 0`` is valid: example ``n`` is a pure function
    of ``(seed, n)`` and the augmentation switches.
    """

    def __init__(
        self,
        cache: DecodedCache,
        targets: Sequence[str],
        input_length: int,
        output_length: int,
        augmentation: Augmentation = Augmentation(),
        seed: int = 0,
        epoch_size: int = 2000 * 16,
    ):
        super().__init__(cache, targets, input_length, output_length)
        self.augmentation = augmentation
        self.seed = int(seed)
        self.epoch_size = int(epoch_size)

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n < 0:
            raise IndexError(n)
        rng = np.random.default_rng([self.seed, int(n)])
        augmentation, sources = self.augmentation, self.cache.sources
        if augmentation.remix:
            picks = [self._random_pick(rng) for _ in sources]
        else:
            picks = [self._random_pick(rng)] * len(sources)
        gains = random_gains(rng, len(sources), augmentation.gain_range) if augmentation.gain else np.ones(len(sources))
        if augmentation.recomputes_mixture:
            # The mixture of the scaled sources, summed straight from the cache over the input window.
            parts = [(track, source, start - self.left_context, float(gain)) for source, (track, start), gain in zip(sources, picks, gains)]
            mixture = self.cache.mix(parts, self.input_length)
        else:
            mixture = self._mixture(*picks[0])
        targets = self._targets(picks, gains)
        if augmentation.channel_swap:
            mixture, targets = random_channel_swap(mixture, targets, rng)
        return mixture, targets

    def _random_pick(self, rng: np.random.Generator) -> tuple[int, int]:
        """A random track and a random output window start in it."""
        track = int(rng.integers(len(self.cache)))
        last_start = max(self.cache.tracks[track].frames - self.output_length, 0)
        return track, int(rng.integers(last_start + 1))


class ValidationExcerpts(_Excerpts):
    """Fixed excerpts: output windows tiling every track, the same in every run.

    Windows start every ``output_length`` samples; the last one ends at the end of the track (it
    overlaps its neighbour rather than running into silence). ``excerpts_per_track`` keeps that many
    evenly spaced windows per track (all when None). The mixture is the dataset's own.
    """

    def __init__(
        self,
        cache: DecodedCache,
        targets: Sequence[str],
        input_length: int,
        output_length: int,
        excerpts_per_track: int | None = None,
    ):
        super().__init__(cache, targets, input_length, output_length)
        self.windows = [
            (track, start)
            for track in range(len(cache))
            for start in tile(cache.tracks[track].frames, self.output_length, excerpts_per_track)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        track, start = self.windows[index]
        sources = len(self.cache.sources)
        return self._mixture(track, start), self._targets([(track, start)] * sources, np.ones(sources))


def tile(frames: int, length: int, count: int | None = None) -> list[int]:
    """Start samples of windows of ``length`` covering ``frames`` samples; ``count`` evenly spaced of them."""
    last = max(frames - length, 0)
    starts = list(range(0, last + 1, length))
    if starts[-1] != last:
        starts.append(last)
    if count is not None and count < len(starts):
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, count).round().astype(int)]
    return starts


class WholeTracks(Dataset):
    """Whole tracks for validation by full separation: ``(mixture [C, T], targets [K, C, T])``."""

    def __init__(self, cache: DecodedCache, targets: Sequence[str]):
        check_targets(tuple(targets), cache.sources, cache.description)
        self.cache, self.targets = cache, tuple(targets)

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def track_names(self) -> list[str]:
        return [track.name for track in self.cache.tracks]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stems = self.cache.window(index, 0, self.cache.tracks[index].frames)
        return stems[0], build_targets(dict(zip(self.cache.sources, stems[1:])), self.targets)
