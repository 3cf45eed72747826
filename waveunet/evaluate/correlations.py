"""Lagged cross-correlations of many signals within frames and over whole tracks, by blocked FFTs.

BSSEval needs, at lags ``0 … L−1``, the correlations of every reference channel with every
reference and estimate channel: within each frame (the energies of the frame's projections, see
:mod:`.framewise`) and over the whole track (the normal equations of the distortion filters).

A frame is zero outside itself. It is cut into blocks of ``B`` samples; block ``b`` of ``y`` is
correlated with the ``N = B + L − 1`` samples of ``x`` from the block's start by FFTs of ``N``
points, which is free of wrap-around at the lags wanted, and the products of a frame's blocks are
summed in the frequency domain before one inverse FFT per pair and frame. Frames are made and
transformed one at a time, so that their spectra stay in cache. When the frames tile the track
(museval's default: hop = window), the track's correlations are the frames' plus the few products
that cross frame boundaries, so the audio is transformed once.

The frames' correlations are within an ulp or two of the exactly rounded sums. The track's are
needed beyond that (the ill-conditioned systems of band-limited references move by ~0.01 dB with
an ulp): :class:`TrackSpectrum` sums the frames' spectra, which are as accurate as the FFTs in every
bin, weak ones included, and transforms the sum back exactly, as a double-double.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .extended import dd_add
from .inverse_dft import exact_lags

#: bytes of spectra one batch of blocks may hold
_MEMORY_BUDGET = 256 * 2**20
#: blocks transformed at once: a frame's (1 s: 13 blocks of 4096 points), whose spectra stay in cache
_BLOCKS_AT_ONCE = 16
#: FFT points at least, for the blocks of a segment: with L = 512, 4096 points put 13 blocks in a
#: 1 s frame; the forward transforms cost the same as 6 of 8192 points, the inverse ones (per frame
#: and, exactly, per track) half. Measured on 30 s of the benchmark's cases: 6 % faster than 8192
#: with 2 sources, 15 % with 4; 2048 is no faster
_SHORTEST_FFT = 4096
#: samples of the segments :func:`track_correlations` cuts a track into: a second, whose spectra
#: stay in cache, as the frames' do
TRACK_CHUNK = 44100


@dataclass(frozen=True)
class BlockPlan:
    """How a segment of ``length`` samples is cut for lags ``0 … lags−1``: ``blocks`` blocks of
    ``block`` samples, each transformed with its look-ahead by FFTs of ``n_fft`` points; the
    segment is stored zero-padded to ``padded`` samples."""

    lags: int
    length: int
    n_fft: int
    block: int
    blocks: int
    padded: int

    @classmethod
    def for_segment(cls, length: int, lags: int, n_fft: int | None = None) -> BlockPlan:
        """FFTs of a power of two ``>= 2 L``, at least :data:`_SHORTEST_FFT`, or shorter where one
        block covers the whole segment (or of ``n_fft`` points, to add to spectra of that length)."""
        if n_fft is None:
            n_fft = max(_SHORTEST_FFT, 1 << (2 * lags - 1).bit_length())
            n_fft = min(n_fft, 1 << (length + lags - 2).bit_length())
        block = n_fft - lags + 1
        blocks = -(-length // block)
        return cls(lags, length, n_fft, block, blocks, (blocks - 1) * block + n_fft)


def framed(sources: list[torch.Tensor], start: int, hop: int, count: int, plan: BlockPlan):
    """The frames of the signals ``sources`` (each [S_i, time, C]), one at a time: frame ``t`` is
    the ``plan.length`` samples from ``start + t·hop``, yielded as [P, padded] (P = Σ S_i·C
    channels ordered (signal, source, channel), zero after the frame). The buffer is reused: a
    frame is valid until the next one is yielded."""
    window = plan.length
    n_channels = sum(signals.shape[0] * signals.shape[2] for signals in sources)
    buffer = sources[0].new_zeros(n_channels, plan.padded)
    for t in range(count):
        first, offset = 0, start + t * hop
        for signals in sources:
            n_sources, _, channels = signals.shape
            rows = buffer[first:first + n_sources * channels, :window].view(n_sources, channels, window)
            rows.copy_(signals[:, offset:offset + window].permute(0, 2, 1))
            first += n_sources * channels
        yield buffer


class TrackSpectrum:
    """The spectrum [F, P, n_y] of a whole track's correlations, summed over its segments' blocks
    (each at the same FFT length), and its lags beyond float64 (:meth:`lags`).

    In every bin it is as accurate as its FFTs, to ~eps of a block's energy, so the weak bins of
    band-limited references stay accurate to ~1e-8 of themselves; the exact inverse transform
    (:func:`~.inverse_dft.exact_lags`) keeps that, where a float64 one adds white rounding of eps
    of the energy at every lag, as large as the signal in an empty band.
    """

    def __init__(self, n_fft: int, n_x: int, n_y: int, like: torch.Tensor):
        self.n_fft = n_fft
        self.spectrum = torch.zeros(n_fft // 2 + 1, n_x, n_y, dtype=torch.complex128, device=like.device)

    def add(self, spectrum: torch.Tensor, plan: BlockPlan) -> None:
        if plan.n_fft != self.n_fft:
            raise ValueError("segments of one track must share their FFT length")
        self.spectrum += spectrum

    def lags(self, lags: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The correlations [P, n_y, L] as a double-double ``(hi, lo)``."""
        hi, lo = exact_lags(self.spectrum, self.n_fft, lags)
        return hi.permute(1, 2, 0), lo.permute(1, 2, 0)


def frame_correlations(sources: list[torch.Tensor], start: int, hop: int, count: int, plan: BlockPlan,
                       n_y: int, track: TrackSpectrum | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Within each of ``count`` frames (see :func:`framed`) of the signals ``sources``:
    ``corr[t, p, q, k] = Σ_n f[p, n + k] · f[q, n]`` for the first ``n_y`` channels ``q`` (float64
    FFTs), and the lag-zero products of all channels ``gram[t, p, q] = Σ_n f[p, n] · f[q, n]``;
    the frames' spectra are added to ``track`` if given.

    Returns:
        corr [T, P, n_y, L] and gram [T, P, P].
    """
    n_channels = sum(signals.shape[0] * signals.shape[2] for signals in sources)
    corr = sources[0].new_empty(count, n_channels, n_y, plan.lags)
    gram = sources[0].new_empty(count, n_channels, n_channels)
    spectra = BlockSpectra(plan, n_channels, n_y, sources[0])
    spectrum = torch.empty(plan.n_fft // 2 + 1, n_channels, n_y, dtype=torch.complex128, device=sources[0].device)
    for t, frame in enumerate(framed(sources, start, hop, count, plan)):
        spectra.correlation_spectrum(frame, out=spectrum)  # one buffer for every frame
        if track is not None:
            track.add(spectrum, plan)
        corr[t] = _lags(spectrum, plan.n_fft, plan.lags)
        samples = frame[:, :plan.length]
        gram[t] = samples @ samples.T
    return corr, gram


def add_spectra(track: TrackSpectrum, sources: list[torch.Tensor], start: int, hop: int, count: int,
                plan: BlockPlan) -> None:
    """Add the spectra of the correlations within ``count`` frames of ``sources`` (as
    :func:`frame_correlations`, without their lags) to ``track``."""
    _, n_x, n_y = track.spectrum.shape
    spectra = BlockSpectra(plan, n_x, n_y, sources[0])
    for frame in framed(sources, start, hop, count, plan):
        track.add(spectra.correlation_spectrum(frame), plan)


def _lags(spectrum: torch.Tensor, n_fft: int, lags: int) -> torch.Tensor:
    """Correlations [P, Q, L] from their spectrum [F, P, Q]."""
    return torch.fft.irfft(spectrum, n=n_fft, dim=0)[:lags].permute(1, 2, 0)


class BlockSpectra:
    """The spectra of a segment's blocks, made in one reused buffer (allocating it anew per frame
    costs more than the products).

    Block ``b`` of ``y`` (the first ``n_y`` channels) correlated with its look-ahead segment in
    ``x`` by FFTs of ``plan.n_fft`` points is free of wrap-around at lags below L. Both are copied
    into one contiguous buffer, ``x``'s segments then ``y``'s zero-padded blocks, and transformed in
    one call, a few blocks at a time (they stay in cache, and within :data:`_MEMORY_BUDGET` for any
    length).
    """

    def __init__(self, plan: BlockPlan, n_x: int, n_y: int, like: torch.Tensor):
        self.plan, self.n_x, self.n_y = plan, n_x, n_y
        self.step = max(1, min(_BLOCKS_AT_ONCE, plan.blocks,
                               _MEMORY_BUDGET // ((n_x + n_y) * (plan.n_fft // 2 + 1) * 16)))
        self.buffer = like.new_zeros(self.step, n_x + n_y, plan.n_fft)  # y's tails stay zero

    def __call__(self, segment: torch.Tensor):
        """Yields, for a segment [P, plan.padded] (zero beyond ``plan.length``), the look-ahead
        segments' spectra of every channel [F, P, b] and the conjugated blocks' of the first
        ``n_y`` [F, b, n_y], laid out for one matrix product per frequency that sums over the
        blocks (contiguous: torch's CPU matmul of complex batches loops over the batch otherwise)."""
        plan, n_x = self.plan, self.n_x
        segments = segment.unfold(-1, plan.n_fft, plan.block)  # [P, blocks, N]: a strided view
        blocks = segment[:self.n_y, :plan.blocks * plan.block].unflatten(-1, (plan.blocks, plan.block))
        for first in range(0, plan.blocks, self.step):
            both = self.buffer[:min(self.step, plan.blocks - first)]
            both[:, :n_x].copy_(segments[:, first:first + len(both)].transpose(0, 1))
            both[:, n_x:, :plan.block].copy_(blocks[:, first:first + len(both)].transpose(0, 1))
            spectra = torch.fft.rfft(both)  # [b, P + Q, F]
            x_spec = spectra[:, :n_x].permute(2, 1, 0).contiguous()
            y_spec = spectra[:, n_x:].permute(2, 0, 1).contiguous()
            yield x_spec, y_spec.conj_physical_()

    def correlation_spectrum(self, segment: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``Σ_blocks X · conj(Y)`` [F, P, n_y] of a segment, into ``out`` if given."""
        for i, (x_spec, y_spec) in enumerate(self(segment)):
            if i == 0:
                out = torch.bmm(x_spec, y_spec, out=out)
            else:
                out.baddbmm_(x_spec, y_spec)
        return out


def boundary_correlations(sources: list[torch.Tensor], n_y: int, lags: int, boundaries: list[int]) -> torch.Tensor:
    """``Σ_e Σ_{n < e <= n + k} x[p, n + k] · x[q, n]``: the products of a track's correlations that
    cross the boundaries ``e`` between consecutive segments (each at least ``L − 1`` samples long,
    so that no product crosses two).

    Args:
        sources: signals [S_i, time, C], channels ordered as :func:`framed` orders them.

    Returns:
        [P, n_y, L].
    """
    span = lags - 1
    length = sources[0].shape[1]
    n_x = sum(signals.shape[0] * signals.shape[2] for signals in sources)
    if span == 0 or not boundaries:
        return sources[0].new_zeros(n_x, n_y, lags)
    after = sources[0].new_zeros(len(boundaries), n_x, 2 * span)  # x from the boundary on
    before = sources[0].new_zeros(len(boundaries), n_x, span)  # y up to it
    for i, edge in enumerate(boundaries):
        stop = min(edge + span, length)
        after[i, :, span:span + stop - edge] = torch.cat([s[:, edge:stop].permute(0, 2, 1).flatten(0, 1) for s in sources])
        before[i] = torch.cat([s[:, edge - span:edge].permute(0, 2, 1).flatten(0, 1) for s in sources])
    n_fft = 1 << (3 * span - 1).bit_length()
    # contiguous: torch's CPU matmul of complex batches loops over the batch otherwise
    x_spec = torch.fft.rfft(after, n=n_fft).permute(2, 1, 0).contiguous()  # [F, P, E]
    y_spec = torch.fft.rfft(before[:, :n_y], n=n_fft).permute(2, 0, 1).conj().resolve_conj().contiguous()  # [F, E, Q]
    spectrum = x_spec @ y_spec  # [F, P, Q]
    return torch.fft.irfft(spectrum, n=n_fft, dim=0)[:lags].permute(1, 2, 0)


def track_correlations(sources: list[torch.Tensor], n_y: int, lags: int,
                       chunk: int = TRACK_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """``out[p, q, k] = Σ_n x_p[n + k] · x_q[n]`` over the whole signals ``sources`` (each
    [S_i, time, C], channels ordered as :func:`framed` orders them), ``q`` among the first
    ``n_y``, beyond float64 (:class:`TrackSpectrum`): the track cut into segments of ``chunk``
    samples, each correlated on its own, plus the samples after the last one and the products
    that cross the boundaries between them (float64 suffices there: a few hundred products per lag
    and boundary). Whatever the frames, only a segment is held at a time.

    Returns:
        [P, n_y, L] as a double-double ``(hi, lo)``.
    """
    length = sources[0].shape[1]
    window = max(min(length, chunk), lags - 1)
    count = max(1, length // window)
    plan = BlockPlan.for_segment(min(window, length), lags)
    track = TrackSpectrum(plan.n_fft, sum(s.shape[0] * s.shape[2] for s in sources), n_y, sources[0])
    add_spectra(track, sources, 0, window, count, plan)
    return track_total(track, sources, n_y, lags, window, count)


def track_total(track: TrackSpectrum, sources: list[torch.Tensor], n_y: int, lags: int, window: int,
                count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The track's correlations [P, n_y, L] (double-double) from ``track``, the spectrum of
    ``count`` segments of ``window`` samples that tile it from its start (one after the other):
    plus the samples after the last one and the products across the segments' boundaries."""
    length = sources[0].shape[1]
    end, boundaries = tiling(length, window, window, count)
    if end < length:
        add_spectra(track, sources, end, window, 1, BlockPlan.for_segment(length - end, lags, track.n_fft))
    return dd_add(*track.lags(lags), boundary_correlations(sources, n_y, lags, boundaries))


def tiling(length: int, hop: int, window: int, count: int) -> tuple[int, list[int]]:
    """Where ``count`` frames that tile a track (hop = window) end, and the boundaries between the
    segments (the frames and what follows the last one)."""
    end = (count - 1) * hop + window
    boundaries = [t * hop for t in range(1, count)] + ([end] if end < length else [])
    return end, boundaries
