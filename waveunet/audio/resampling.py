"""Band-limited resampling (torchaudio's sinc interpolation), of whole signals or block by block."""

from __future__ import annotations

import math

import torch


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling of [..., time] audio from ``orig_sr`` to ``new_sr`` Hz."""
    if orig_sr == new_sr:
        return audio
    import torchaudio.functional  # imported here: only callers that resample pay for torchaudio

    return torchaudio.functional.resample(audio, int(orig_sr), int(new_sr))


class StreamResampler:
    """:func:`resample` for a signal that arrives in consecutive blocks ``[..., n_i]``.

    The outputs of :meth:`push` and :meth:`flush`, concatenated, equal ``resample`` of the whole
    signal up to float rounding, while only one block (plus a few samples of filter margin) is held.
    torchaudio resamples by a polyphase filter with stride ``orig`` (the rates divided by their
    greatest common divisor): output ``k * new + p`` depends on the inputs within ``width`` of
    ``k * orig``. So each call resamples the pending samples together with ``margin`` samples of
    their neighbours on both sides, starting at a multiple of ``orig``, and emits only the outputs
    that the zero padding at the block's ends cannot reach.
    """

    def __init__(self, orig_sr: int, new_sr: int):
        self.orig_sr, self.new_sr = int(orig_sr), int(new_sr)
        gcd = math.gcd(self.orig_sr, self.new_sr)
        self.orig, self.new = self.orig_sr // gcd, self.new_sr // gcd
        # torchaudio's filter reaches ceil(6 * orig / (0.99 * min(orig, new))) inputs each way
        width = math.ceil(6 * self.orig / (0.99 * min(self.orig, self.new)))
        self.margin = self.orig * (width // self.orig + 2)
        self._buffer: torch.Tensor | None = None  # inputs from global index self._next - lead
        self._next = 0  # first input index (a multiple of orig) whose outputs are still to come
        self._received = 0

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Take the next ``[..., n]`` inputs; return the outputs that are now final."""
        if self.orig_sr == self.new_sr:
            return block
        self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], dim=-1)
        self._received += block.shape[-1]
        until = (self._received - self.margin) // self.orig * self.orig
        if until <= self._next:
            return block.new_zeros(*block.shape[:-1], 0)
        lead = self._lead()
        out = resample(self._buffer, self.orig, self.new)
        out = out[..., lead // self.orig * self.new : (until - self._next + lead) // self.orig * self.new]
        self._next = until
        self._buffer = self._buffer[..., self._buffer.shape[-1] - (self._received - until) - self._lead():]
        return out

    def flush(self) -> torch.Tensor:
        """The remaining outputs, treating the signal as ending here (zero-padded, as ``resample`` does)."""
        if self.orig_sr == self.new_sr or self._buffer is None:
            return torch.zeros(0) if self._buffer is None else self._buffer[..., :0]
        out = resample(self._buffer, self.orig, self.new)[..., self._lead() // self.orig * self.new :]
        self._buffer, self._next = self._buffer[..., :0], self._received
        return out

    def _lead(self) -> int:
        # context kept before the next pending input: none at the signal's start
        return min(self._next, self.margin)
