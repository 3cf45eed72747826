"""Data augmentation for training excerpts.

- ``gain``: each source times a gain drawn uniformly from ``gain_range`` (the paper's [0.7, 1.0]);
- ``channel_swap``: left and right exchanged with probability 1/2 (stereo only);
- ``remix``: every source drawn from an independent random track and position, so the network sees
  mixtures that never existed (the sources stay real).

With ``gain`` or ``remix`` the mixture is recomputed as the sum of the (scaled) sources; otherwise the
dataset's own mixture is used (for the compressed MUSDB18 it differs from the sum of its stems by up to
about 0.05, the AAC coding error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations training examples get; the default is none."""

    gain: bool = False
    gain_range: tuple[float, float] = (0.7, 1.0)
    channel_swap: bool = False
    remix: bool = False

    @property
    def recomputes_mixture(self) -> bool:
        """Whether the mixture must be rebuilt as the sum of the sources."""
        return self.gain or self.remix


def random_gains(rng: np.random.Generator, count: int, gain_range: tuple[float, float]) -> np.ndarray:
    """One gain per source, drawn uniformly from ``gain_range``."""
    return rng.uniform(gain_range[0], gain_range[1], size=count)


def random_channel_swap(mixture: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture [channels, time] and targets [K, channels, time] with left and right exchanged in all
    of them, with probability 1/2.

    The coin is tossed for mono audio too, so the random stream does not depend on the channel count.
    """
    swap = rng.random() < 0.5
    if swap and mixture.shape[0] == 2:
        return mixture.flip(0), targets.flip(1)
    return mixture, targets
