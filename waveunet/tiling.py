"""Tiled inference: run a U-Net over a signal of any size, one window (tile) at a time.

A U-Net takes inputs of certain sizes only and, with valid convolutions, predicts only the centre of
its input: an input window of ``input`` samples yields ``output`` samples, ``context = (input -
output) / 2`` samples in from each border. To predict a whole song (or image), cut it into windows
whose output regions tile it, each window carrying the context its output needs; pad only where a
window reaches beyond the signal's edges: zeros for audio (as the Wave-U-Net does), ``reflect``
for images (the U-Net's overlap-tile strategy). The same code serves time (``dims=1``) and height x
width (``dims=2``): the :class:`Tiling` holds one size per spatial axis.

Two ways to stitch the windows' outputs:

* **exact** (``fade=False``): window ``i`` keeps its first ``hop`` output samples, and the kept
  regions abut. With valid convolutions and a ``hop`` that is a multiple of the network's total
  down-sampling factor (``model.length_step``), every window sees the same samples on the same
  decimation grid as one pass over the whole signal would, so the stitched result equals that pass
  (up to float rounding).
* **faded** (``fade=True``): for networks whose output depends on where the window lies (same
  padding, normalisation over the window, reflect padding inside the network), windows overlap and
  their outputs are blended with triangular weights, as in Demucs' ``apply_model``. This is an
  approximation: the result is not one pass over the whole signal.

Windows are placed on a grid anchored at the start of the requested ``region``: window ``i`` covers
outputs ``[i * hop, i * hop + kept)`` of the region, for every integer ``i`` whose kept part meets
the region. A caller that processes a long signal region by region (regions starting at multiples of
``hop``) therefore gets the same windows, and the same result, as one call over the whole signal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Tiling:
    """How to cut a signal into model inputs; one entry per spatial axis.

    Attributes:
        input: size of one model input window.
        output: size of the model's output for that input (centred in it).
        hop: distance between consecutive windows' outputs.
        fade: blend overlapping outputs (approximate); otherwise each window keeps its first ``hop``
            output samples (exact for valid, translation-equivariant networks).
    """

    input: tuple[int, ...]
    output: tuple[int, ...]
    hop: tuple[int, ...]
    fade: bool = False

    def __post_init__(self):
        for name in ("input", "output", "hop"):
            object.__setattr__(self, name, tuple(int(n) for n in getattr(self, name)))
        if not len(self.input) == len(self.output) == len(self.hop):
            raise ValueError("input, output and hop need one size per spatial axis")
        for i, o, h in zip(self.input, self.output, self.hop):
            if not 0 < h <= o <= i or (i - o) % 2:
                raise ValueError(f"cannot tile with input {i}, output {o}, hop {h}")

    @property
    def dims(self) -> int:
        """Number of spatial axes (1 for audio, 2 for images)."""
        return len(self.input)

    @property
    def context(self) -> tuple[int, ...]:
        """Input samples before (and after) a window's output, per axis."""
        return tuple((i - o) // 2 for i, o in zip(self.input, self.output))

    @property
    def kept(self) -> tuple[int, ...]:
        """Output samples of one window that end up in the result, per axis."""
        return self.output if self.fade else self.hop


def exact_tiling(model: nn.Module, desired_output: int | Sequence[int], dims: int = 1) -> Tiling:
    """Abutting windows for a valid-convolution model, about ``desired_output`` samples each.

    The hop is ``desired_output`` rounded up to a multiple of ``model.length_step`` (so that every
    window lies on the whole signal's down-sampling grid); the input is the smallest valid window
    whose output covers the hop (``model.sizes``).
    """
    desired = _per_axis(desired_output, dims)
    step = model.length_step
    hops = [step * max(1, math.ceil(n / step)) for n in desired]
    windows = [model.sizes(h) for h in hops]
    return Tiling(tuple(w.input_length for w in windows), tuple(w.output_length for w in windows), hops)


def faded_tiling(model: nn.Module, desired_output: int | Sequence[int], dims: int = 1, overlap: float = 0.5) -> Tiling:
    """Overlapping windows for a model whose output depends on the window's position (approximate).

    The window is the smallest valid one with at least ``desired_output`` outputs; consecutive
    windows overlap by the fraction ``overlap`` of their output.
    """
    windows = [model.sizes(n) for n in _per_axis(desired_output, dims)]
    outputs = [w.output_length for w in windows]
    hops = [max(1, round(n * (1 - overlap))) for n in outputs]
    return Tiling(tuple(w.input_length for w in windows), tuple(outputs), hops, fade=True)


def _per_axis(size: int | Sequence[int], dims: int) -> list[int]:
    return [int(size)] * dims if isinstance(size, int) else [int(n) for n in size]


@torch.inference_mode()
def tiled_forward(
    model: nn.Module,
    x: torch.Tensor,
    tiling: Tiling,
    *,
    region: Sequence[tuple[int, int]] | None = None,
    padding: str = "zeros",
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply ``model`` to ``x`` window by window and stitch the outputs.

    Args:
        model: maps ``[batch, channels, *tiling.input]`` to ``[batch, *lead, *tiling.output]``
            (``lead`` is e.g. ``sources, channels`` for the Wave-U-Net, ``classes`` for the U-Net).
        x: the signal, ``[channels, *size]`` with ``tiling.dims`` spatial axes; its borders are the
            signal's borders, beyond which windows are padded.
        tiling: window sizes, see :class:`Tiling`.
        region: ``(start, stop)`` per axis of the part of ``x`` to predict (default all of it);
            samples of ``x`` around it serve as context.
        padding: ``zeros`` or ``reflect`` (mirror without repeating the edge sample).
        batch_size: windows per forward pass.
        progress: called as ``progress(done, total)`` windows after every batch.

    Returns:
        ``[*lead, *region_size]`` on ``x``'s device, float32.
    """
    dims = tiling.dims
    size = x.shape[-dims:]
    region = [tuple(r) for r in region] if region is not None else [(0, n) for n in size]
    extent = [stop - start for start, stop in region]
    device = next(model.parameters(), x).device

    # Window i covers outputs [i*hop, i*hop + kept) of the region; take every i whose part meets it.
    first = [-((k - 1) // h) for k, h in zip(tiling.kept, tiling.hop)]
    last = [max(0, math.ceil(n / h) - 1) for n, h in zip(extent, tiling.hop)]
    grid = list(itertools.product(*(range(a, b + 1) for a, b in zip(first, last))))
    origin = [a * h for a, h in zip(first, tiling.hop)]  # where the stitched buffer starts
    span = [(b - a) * h + k for a, b, h, k in zip(first, last, tiling.hop, tiling.kept)]

    weight = _fade_weights(tiling.output).to(x.device) if tiling.fade else None
    result = norm = None
    for done in range(0, len(grid), batch_size):
        batch = grid[done : done + batch_size]
        windows = torch.stack([
            _cut(x, [start + i * h - c for (start, _), i, h, c in zip(region, index, tiling.hop, tiling.context)],
                 tiling.input, padding)
            for index in batch
        ])
        outputs = model(windows.to(device)).float().to(x.device)
        if result is None:
            result = outputs.new_zeros(*outputs.shape[1:-dims], *span)
            norm = outputs.new_zeros(*span) if tiling.fade else None
        for index, output in zip(batch, outputs):
            at = tuple(slice(i * h - o, i * h - o + k) for i, h, o, k in zip(index, tiling.hop, origin, tiling.kept))
            if tiling.fade:
                result[(Ellipsis, *at)] += output * weight
                norm[at] += weight
            else:
                result[(Ellipsis, *at)] = output[(Ellipsis, *(slice(0, h) for h in tiling.hop))]
        if progress is not None:
            progress(min(done + batch_size, len(grid)), len(grid))
    if tiling.fade:
        result /= norm
    return result[(Ellipsis, *(slice(-o, -o + n) for o, n in zip(origin, extent)))]


def _fade_weights(output: Sequence[int]) -> torch.Tensor:
    """Triangular weights over one window's output, ``[*output]``: high in the middle, low (not zero) at the edges."""
    weight = torch.ones(())
    for n in output:
        ramp = torch.arange(1, n + 1, dtype=torch.float32)
        weight = weight[..., None] * torch.minimum(ramp, ramp.flip(0))
    return weight / weight.max()


# --- mirror padding ----------------------------------------------------------------------------
# ``reflect``: the edge sample is not repeated (``[a b c d]`` continues as ``c b | a b c d | c b``), as
# in ``torch.nn.functional.pad(mode="reflect")`` and ``numpy.pad(mode="reflect")``; unlike torch's pad
# it also works when the padding exceeds the signal (the reflection then folds back, as numpy's does).


def reflect_indices(start: int, length: int, size: int) -> torch.Tensor:
    """Indices [length] into an axis of ``size`` for positions start..start+length-1, mirrored at both ends.

    The reflected axis is periodic with period 2 * (size - 1); an axis of one sample stays constant.
    """
    positions = torch.arange(start, start + length)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded >= size, period - folded, folded)


def reflect_crop(x: torch.Tensor, starts: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
    """A window of the last ``len(starts)`` dims of x, mirrored where it leaves the tensor.

    Each window dim d covers positions starts[d]..starts[d]+lengths[d]-1, which may be negative or
    beyond the end. Leading dims are kept: [..., *lengths].
    """
    dims = range(x.dim() - len(starts), x.dim())
    for dim, start, length in zip(dims, starts, lengths):
        x = x.index_select(dim, reflect_indices(start, length, x.shape[dim]))
    return x


def reflect_pad(x: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """x mirrored by (before, after) samples on each of its last ``len(pads)`` dims, any amount."""
    sizes = x.shape[x.dim() - len(pads):]
    return reflect_crop(x, [-before for before, _ in pads], [n + b + a for n, (b, a) in zip(sizes, pads)])



def _cut(x: torch.Tensor, starts: Sequence[int], lengths: Sequence[int], padding: str) -> torch.Tensor:
    """The window ``[channels, *lengths]`` of ``x`` beginning at ``starts`` (may lie partly outside ``x``)."""
    if padding == "reflect":
        return reflect_crop(x, starts, lengths)
    if padding != "zeros":
        raise ValueError(f"unknown padding {padding!r} (zeros, reflect)")
    dims = len(starts)
    inside = [slice(min(max(0, a), n), min(max(0, a + k), n)) for a, k, n in zip(starts, lengths, x.shape[-dims:])]
    window = x[(Ellipsis, *inside)]
    pads = []  # F.pad lists (before, after) from the last axis backwards
    for a, k, s in zip(reversed(starts), reversed(lengths), reversed(inside)):
        before = min(k, max(0, -a))
        pads += [before, k - before - (s.stop - s.start)]
    return F.pad(window, pads) if any(pads) else window
