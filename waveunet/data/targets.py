"""Source names and the training targets built from them.

A dataset holds *stems*: the ``mixture`` and its *sources* (MUSDB18: vocals, drums, bass, other).
A model asks for *targets* in its own order; each target is a source, or ``accompaniment``, the sum
of every source except the vocals, when the dataset has no stem of that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import WaveUNetError

MIXTURE = "mixture"
ACCOMPANIMENT = "accompaniment"
VOCALS = "vocals"
#: MUSDB18's sources, in the order musdb lists them
MUSDB_SOURCES = ("vocals", "drums", "bass", "other")


def check_targets(targets: Sequence[str], sources: Sequence[str], dataset: str) -> None:
    """Raise WaveUNetError if a target cannot be built from ``sources`` of ``dataset``."""
    if not targets:
        raise WaveUNetError(f"{dataset}: no target sources requested")
    if len(set(targets)) != len(targets):
        raise WaveUNetError(f"{dataset}: target sources repeat: {', '.join(targets)}")
    for target in targets:
        if target in sources:
            continue
        if target == ACCOMPANIMENT and any(source != VOCALS for source in sources):
            continue
        raise WaveUNetError(f"{dataset}: the dataset has no source {target!r} (it has: {', '.join(sources)})")


def build_targets(sources: Mapping[str, torch.Tensor], targets: Sequence[str]) -> torch.Tensor:
    """Stack the ``targets`` made from source waveforms [channels, time] into [targets, channels, time]."""
    return torch.stack([build_target(sources, target) for target in targets])


def build_target(sources: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
    """One target [channels, time]: a source itself, or the accompaniment summed from the others."""
    if target in sources:
        return sources[target]
    if target == ACCOMPANIMENT:
        return sum_of(source for name, source in sources.items() if name != VOCALS)
    raise KeyError(target)


def sum_of(waveforms) -> torch.Tensor:
    """The sum of an iterable of equally shaped waveforms."""
    waveforms = iter(waveforms)
    total = next(waveforms).clone()
    for waveform in waveforms:
        total += waveform
    return total
