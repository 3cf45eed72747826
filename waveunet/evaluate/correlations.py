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

On MUSDB18 stems the results are within an ulp or two of the exactly rounded sums. Where that is
not enough (the ill-conditioned systems of band-limited references), :class:`TrackCorrelations`
gives the track's correlations to ~2^-60 of their terms, as a double-double.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .extended import dd_add, dd_add_dd, scaled, two_sum

#: bytes of spectra one batch of blocks may hold
_MEMORY_BUDGET = 256 * 2**20
#: blocks transformed at once: a frame's (1 s: 6 blocks of 8192 points), whose spectra stay in cache
_BLOCKS_AT_ONCE = 8
#: steps of the coarse grid, in bits: the coarse parts' correlations over a whole track stay far
#: inside float64's exact integers (2^16 per product, 2^43 for an hour of samples), and the
#: float64 FFTs' error on them far below one half
COARSE_BITS = 8
#: a coarse correlation farther than this from an integer means that argument failed
_ROUNDING_GUARD = 0.25
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
    def for_segment(cls, length: int, lags: int) -> BlockPlan:
        """FFTs of a power of two ``>= 2 L``, at least 8192, or shorter where one block covers the
        whole segment. For L = 512 and 1 s frames, 8192 points put 6 blocks in a frame, and their
        spectra in cache."""
        n_fft = max(8192, 1 << (2 * lags - 1).bit_length())
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


def coarse_grid(sources: list[torch.Tensor]) -> torch.Tensor:
    """The exponents ``e`` [P, 1] of each channel's coarse grid (see :func:`split_coarse`): its
    source's largest magnitude over the track is below ``2^(e + COARSE_BITS)`` (one grid for a
    source's channels: a reduction over a contiguous axis, fast)."""
    largest = torch.cat([torch.maximum(signals.flatten(1).amax(dim=1), -signals.flatten(1).amin(dim=1))
                         .repeat_interleave(signals.shape[2]) for signals in sources])  # [P]: max |x|, no copy
    exponent = torch.frexp(torch.where(largest > 0, largest, torch.ones_like(largest)))[1]
    return (exponent - COARSE_BITS)[:, None]


def split_coarse(segment: torch.Tensor, grid: torch.Tensor, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``segment = coarse + fine`` exactly: ``coarse`` the multiples of ``2^e`` nearest (``e``
    the row's ``grid`` exponent: at most ``2^COARSE_BITS`` of them), ``fine`` the rest (below
    ``2^(e−1)``). Only the first ``length`` samples are split (the rest is zero)."""
    length = segment.shape[-1] if length is None else length
    coarse, fine = torch.zeros_like(segment), torch.zeros_like(segment)
    head = segment[:, :length]
    coarse[:, :length] = scaled(torch.round(scaled(head, -grid)), grid)
    torch.sub(head, coarse[:, :length], out=fine[:, :length])
    return coarse, fine


class TrackCorrelations:
    """The correlations of a whole track, summed segment by segment, to ~2^-60 of their terms.

    A float64 FFT correlation errs by ~1e-16 of the signals' energies, and with band-limited
    references (MP3s) that rounding alone moves the scores behind the distortion filters by
    ~0.01 dB (the normal equations are that ill-conditioned). Each signal is split into a
    coarse part on a grid of ``2^COARSE_BITS`` steps and a fine rest (:func:`split_coarse`):
    the coarse parts' correlations are integers (times the grid steps), which the float64 FFTs
    give to within far less than one half, so rounding makes them exact; the rest is 2^-9 of the
    signal, so its float64 rounding is ~2^-9 of what it was. :func:`add_frames` adds segments'
    spectra to :meth:`spectra`, :meth:`lags` gives the sums.
    """

    def __init__(self, grid: torch.Tensor, n_y: int):
        self.grid, self.n_y = grid, n_y
        self.coarse = self.fine = None
        self.n_fft = None

    def spectra(self, n_fft: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The accumulated spectra (coarse, fine) [F, P, n_y], zero at first, to add into."""
        if self.coarse is None:
            shape = (n_fft // 2 + 1, len(self.grid), self.n_y)
            self.coarse = torch.zeros(shape, dtype=torch.complex128, device=device)
            self.fine = torch.zeros_like(self.coarse)
            self.n_fft = n_fft
        elif n_fft != self.n_fft:
            raise ValueError("segments of one track must share their FFT length")
        return self.coarse, self.fine

    def lags(self, lags: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The correlations [P, n_y, L] as a double-double ``(hi, lo)``: float64 rounds them to
        an ulp, and the ill-conditioned systems they make move by ~0.003 dB with that alone."""
        steps = self.grid + self.grid[:self.n_y].T  # [P, Q]: the exponent of each product's step
        values = scaled(_lags(self.coarse, self.n_fft, lags), -steps[..., None])
        integers = torch.round(values)
        if bool(((values - integers).abs() > _ROUNDING_GUARD).any()):
            raise ArithmeticError("track correlations: FFT rounding too large for the coarse grid")
        return two_sum(scaled(integers, steps[..., None]), _lags(self.fine, self.n_fft, lags))


def frame_correlations(sources: list[torch.Tensor], start: int, hop: int, count: int, plan: BlockPlan,
                       n_y: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Within each of ``count`` frames (see :func:`framed`) of the signals ``sources``:
    ``corr[t, p, q, k] = Σ_n f[p, n + k] · f[q, n]`` for the first ``n_y`` channels ``q`` (float64
    FFTs), and the lag-zero products of all channels ``gram[t, p, q] = Σ_n f[p, n] · f[q, n]``.

    Returns:
        corr [T, P, n_y, L] and gram [T, P, P].
    """
    n_channels = sum(signals.shape[0] * signals.shape[2] for signals in sources)
    corr = sources[0].new_empty(count, n_channels, n_y, plan.lags)
    gram = sources[0].new_empty(count, n_channels, n_channels)
    spectrum = None
    for t, frame in enumerate(framed(sources, start, hop, count, plan)):
        if spectrum is None:
            spectrum = torch.empty(plan.n_fft // 2 + 1, n_channels, n_y, dtype=torch.complex128, device=frame.device)
        spectrum.zero_()  # one buffer for every frame: allocating it anew costs more than the products
        for x_spec, y_spec in _block_spectra(frame, n_y, plan):
            spectrum.baddbmm_(x_spec, y_spec)
        corr[t] = _lags(spectrum, plan.n_fft, plan.lags)
        samples = frame[:, :plan.length]
        gram[t] = samples @ samples.T
    return corr, gram


def add_frames(track: TrackCorrelations, sources: list[torch.Tensor], start: int, hop: int, count: int,
               plan: BlockPlan) -> None:
    """Add the correlations within ``count`` frames of ``sources`` (as :func:`frame_correlations`)
    to ``track``, to ~2^-60 of their terms: the frames' coarse parts and fine rests
    (:func:`split_coarse`) are correlated separately, their blocks' spectra summed into the track's."""
    coarse, fine = track.spectra(plan.n_fft, sources[0].device)
    for frame in framed(sources, start, hop, count, plan):
        coarse_part, fine_part = split_coarse(frame, track.grid, plan.length)
        for (x_coarse, y_coarse), (x_fine, y_fine) in zip(_block_spectra(coarse_part, track.n_y, plan, parts=2),
                                                          _block_spectra(fine_part, track.n_y, plan, parts=2)):
            coarse.baddbmm_(x_coarse, y_coarse)
            # the rest: X_f (Y_c + Y_f)* + X_c Y_f*
            fine.baddbmm_(x_fine, y_coarse.add_(y_fine))
            fine.baddbmm_(x_coarse, y_fine)


def _lags(spectrum: torch.Tensor, n_fft: int, lags: int) -> torch.Tensor:
    """Correlations [P, Q, L] from their spectrum [F, P, Q]."""
    return torch.fft.irfft(spectrum, n=n_fft, dim=0)[:lags].permute(1, 2, 0)


def _block_spectra(segment: torch.Tensor, n_y: int, plan: BlockPlan, parts: int = 1):
    """The spectra of a segment [P, plan.padded] (zero beyond ``plan.length``), a few blocks at a
    time (they stay in cache, and within :data:`_MEMORY_BUDGET` for any length): yields the
    look-ahead segments of every channel [F, P, b] and the conjugated blocks of the first ``n_y``
    [F, b, n_y], laid out for one matrix product per frequency that sums over the blocks
    (contiguous: torch's CPU matmul of complex batches loops over the batch otherwise). Block
    ``b`` of ``y`` correlated with its look-ahead in ``x`` by FFTs of ``plan.n_fft`` points is free
    of wrap-around at lags below L."""
    n_fft, block, n_blocks = plan.n_fft, plan.block, plan.blocks
    step = max(1, min(_BLOCKS_AT_ONCE, _MEMORY_BUDGET // (parts * (segment.shape[0] + n_y) * (n_fft // 2 + 1) * 16)))
    segments = segment.unfold(-1, n_fft, block)  # [P, blocks, N]: a strided view
    blocks = segment[:n_y, :n_blocks * block].unflatten(-1, (n_blocks, block))  # [Q, blocks, B]
    for first in range(0, n_blocks, step):
        x_spec = torch.fft.rfft(segments[:, first:first + step], n=n_fft).permute(2, 0, 1).contiguous()
        y_spec = torch.fft.rfft(blocks[:, first:first + step], n=n_fft).permute(2, 1, 0).contiguous()
        yield x_spec, y_spec.conj_physical_()


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
    ``n_y``, to ~2^-60 of its terms (:class:`TrackCorrelations`): the track cut into segments of
    ``chunk`` samples, each correlated on its own, plus the samples after the last one and the
    products that cross the boundaries between them (float64 suffices there: a few hundred
    products per lag and boundary). Whatever the frames, only a segment is held at a time.

    Returns:
        [P, n_y, L] as a double-double ``(hi, lo)``.
    """
    length = sources[0].shape[1]
    window = max(min(length, chunk), lags - 1)
    count = max(1, length // window)
    grid = coarse_grid(sources)
    track = TrackCorrelations(grid, n_y)
    add_frames(track, sources, 0, window, count, BlockPlan.for_segment(min(window, length), lags))
    total = track.lags(lags)
    end, boundaries = tiling(length, window, window, count)
    if end < length:
        tail = TrackCorrelations(grid, n_y)
        add_frames(tail, sources, end, window, 1, BlockPlan.for_segment(length - end, lags))
        total = dd_add_dd(*total, *tail.lags(lags))
    return dd_add(*total, boundary_correlations(sources, n_y, lags, boundaries))


def tiling(length: int, hop: int, window: int, count: int) -> tuple[int, list[int]]:
    """Where ``count`` frames that tile a track (hop = window) end, and the boundaries between the
    segments (the frames and what follows the last one)."""
    end = (count - 1) * hop + window
    boundaries = [t * hop for t in range(1, count)] + ([end] if end < length else [])
    return end, boundaries
