"""Bringing audio to a model's channel count: mono <-> stereo, and downmixing surround to mono."""

from __future__ import annotations

import torch

from ..errors import WaveUNetError


def match_channels(audio: torch.Tensor, channels: int, downmix: bool = False, name: str = "audio") -> torch.Tensor:
    """Convert [C, time] audio to [channels, time].

    Mono becomes stereo by duplication and stereo becomes mono by averaging. Audio with more than two
    channels is refused (``name`` says which in the error) unless ``downmix`` is set, in which case it
    is averaged to mono first.
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    if have > 2:
        if not downmix:
            raise WaveUNetError(f"{name}: has {have} channels; only mono and stereo are supported (use downmix)")
        audio, have = audio.mean(dim=0, keepdim=True), 1
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if channels == 2 and have == 1:
        return audio.expand(2, -1).clone()
    if channels == have:
        return audio
    raise WaveUNetError(f"{name}: cannot convert {have} channels to {channels}")
