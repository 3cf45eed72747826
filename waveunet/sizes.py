"""Size arithmetic of U-Nets with valid ("context") or same convolutions, as pure functions.

A U-Net only accepts some input lengths, and its output is shorter than its input by a fixed
context on each side. Every layer that changes the length is described by one small *size op*
(:class:`Conv`, :class:`Decimate`, :class:`Upsample`, ...) with a forward map ``n -> m`` and its
minimal inverse. A network is three op sequences: the contracting path, the bottleneck and the
expanding path. Following the Wave-U-Net reference implementations, the sizes are fixed by the
*bottleneck length*: count it up from 1 until the expanding path yields at least the desired
output; the contracting path, inverted, gives the input length.

The same functions serve 1D (time) and 2D (each of height and width) networks. The paper's M4
(12 levels of a 15-tap conv and decimation, a 15-tap bottleneck conv, 12 levels of interpolation
and a 5-tap conv, a 1-tap output conv)::

    >>> down = [Conv(15), Decimate(2)] * 12
    >>> up = [Upsample(2), Conv(5)] * 12 + [Conv(1)]
    >>> m4 = unet_sizes(down, [Conv(15)], up, 16384)
    >>> m4.input_length, m4.output_length, m4.context
    (147443, 16389, 65527)
    >>> output_length_for(down, [Conv(15)], up, 147443 + 4096), valid_length_step(down)
    (20485, 4096)

:class:`SizedNetwork` gives a network built of such layers (it lists them with ``size_paths()``)
the same arithmetic as methods and properties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence


class SizeError(ValueError):
    """A length that a layer cannot take (e.g. an odd length into an exact 2x pooling)."""


class SizeOp(Protocol):
    def forward(self, n: int) -> int:
        """Output length for input length ``n``; raises :class:`SizeError` if ``n`` is not allowed."""

    def inverse(self, m: int) -> int:
        """The smallest input length whose output length is ``m``."""


@dataclass(frozen=True)
class Conv:
    """Convolution with ``kernel`` taps and ``stride``; ``padding="same"`` maps n -> n / stride."""

    kernel: int
    stride: int = 1
    padding: str = "valid"

    def forward(self, n: int) -> int:
        if self.padding == "same":
            if n % self.stride:
                raise SizeError(f"length {n} is not a multiple of the stride {self.stride}")
            return n // self.stride
        if n < self.kernel or (n - self.kernel) % self.stride:
            raise SizeError(f"convolution (kernel {self.kernel}, stride {self.stride}) cannot take length {n}")
        return (n - self.kernel) // self.stride + 1

    def inverse(self, m: int) -> int:
        return m * self.stride if self.padding == "same" else (m - 1) * self.stride + self.kernel


@dataclass(frozen=True)
class Decimate:
    """Keep every ``factor``-th sample, ``h[..., ::factor]`` (valid mode: n -> ceil(n / factor)).

    In valid mode the length must be 1 modulo ``factor``, so that the last sample is kept and the
    next level's interpolation (n -> factor*(n-1)+1) restores the exact grid; this is what pins the
    valid input lengths to one residue modulo factor**L. In same mode the length must be a multiple
    of ``factor`` (n -> n / factor): the same-padded Wave-U-Net (M1, M2) needs multiples of 2**L.
    """

    factor: int = 2
    padding: str = "valid"

    def forward(self, n: int) -> int:
        if self.padding == "same":
            if n % self.factor:
                raise SizeError(f"length {n} is not a multiple of {self.factor}")
            return n // self.factor
        if n % self.factor != 1 % self.factor:
            raise SizeError(f"length {n} is not 1 modulo the decimation factor {self.factor}")
        return (n - 1) // self.factor + 1

    def inverse(self, m: int) -> int:
        return m * self.factor if self.padding == "same" else (m - 1) * self.factor + 1


@dataclass(frozen=True)
class Pool:
    """Max-pooling by ``factor``; exact division unless ``ceil_mode`` (as ``nn.MaxPool2d``)."""

    factor: int = 2
    ceil_mode: bool = False

    def forward(self, n: int) -> int:
        if self.ceil_mode:
            return -(-n // self.factor)
        if n % self.factor:
            raise SizeError(f"length {n} is not a multiple of the pooling factor {self.factor}")
        return n // self.factor

    def inverse(self, m: int) -> int:
        return (m - 1) * self.factor + 1 if self.ceil_mode else m * self.factor


@dataclass(frozen=True)
class Resample:
    """Fixed low-pass (sinc) resampling by ``factor`` of the PyTorch Wave-U-Net: length must be 1 mod factor.

    The filter is applied after reflect-padding ``pad`` samples, which needs more than ``pad`` samples.
    """

    factor: int
    up: bool = False
    pad: int = 7

    def forward(self, n: int) -> int:
        if n <= self.pad:
            raise SizeError(f"length {n} is too short to reflect-pad {self.pad} samples")
        if self.up:
            return (n - 1) * self.factor + 1
        if n % self.factor != 1 % self.factor:
            raise SizeError(f"length {n} is not 1 modulo the resampling factor {self.factor}")
        return (n - 1) // self.factor + 1

    def inverse(self, m: int) -> int:
        if self.up:
            if (m - 1) % self.factor:
                raise SizeError(f"length {m} is not an output of upsampling by {self.factor}")
            return (m - 1) // self.factor + 1
        return (m - 1) * self.factor + 1


@dataclass(frozen=True)
class Upsample:
    """Interpolating upsampling by ``factor``: valid mode n -> factor*(n-1)+1 (corners aligned), same n -> factor*n."""

    factor: int = 2
    padding: str = "valid"

    def forward(self, n: int) -> int:
        return n * self.factor if self.padding == "same" else (n - 1) * self.factor + 1

    def inverse(self, m: int) -> int:
        return -(-m // self.factor) if self.padding == "same" else -(-(m - 1) // self.factor) + 1


@dataclass(frozen=True)
class TransposedConv:
    """Transposed convolution: n -> (n - 1) * stride - 2 * padding + kernel."""

    kernel: int
    stride: int
    padding: int = 0

    def forward(self, n: int) -> int:
        return (n - 1) * self.stride - 2 * self.padding + self.kernel

    def inverse(self, m: int) -> int:
        return max(1, -(-(m + 2 * self.padding - self.kernel) // self.stride) + 1)


def forward_length(ops: Sequence[SizeOp], n: int) -> int:
    """Apply ``ops`` in order to length ``n``; raises :class:`SizeError` where a layer refuses."""
    for op in ops:
        n = op.forward(n)
        if n < 1:
            raise SizeError("the length shrinks to nothing inside the network")
    return n


def inverse_length(ops: Sequence[SizeOp], m: int) -> int:
    """The smallest input length that ``ops`` map to exactly ``m`` (inverting them last to first)."""
    for op in reversed(ops):
        m = op.inverse(m)
    return m


@dataclass(frozen=True)
class UNetSizes:
    """Lengths of one U-Net configuration (per axis for images)."""

    input_length: int
    output_length: int
    bottleneck_length: int

    @property
    def context(self) -> int:
        """Input samples on each side of the output window (left and right are equal)."""
        return (self.input_length - self.output_length) // 2

    @property
    def receptive_field(self) -> int:
        """Input samples that influence one output sample: the context on both sides plus itself."""
        return self.input_length - self.output_length + 1


def unet_sizes(down: Sequence[SizeOp], bottleneck: Sequence[SizeOp], up: Sequence[SizeOp],
               desired_output: int, max_bottleneck: int = 1 << 24) -> UNetSizes:
    """Input and output length for at least ``desired_output`` output samples.

    Args:
        down: size ops of the contracting path, input side first.
        bottleneck: size ops between the last down-sampling and the first up-sampling.
        up: size ops of the expanding path (including the output layer).
        desired_output: the output length wanted; the result is the smallest valid length >= it.

    The bottleneck length (after ``bottleneck``) is counted up from 1, as the reference
    implementations do; the input length inverts ``bottleneck`` and ``down``.
    """
    if desired_output < 1:
        raise ValueError(f"desired output length must be positive, got {desired_output}")
    # The expanding path grows about linearly with the bottleneck length: jump close to the answer,
    # then count up so the result is the first valid one.
    gain = math.prod(getattr(op, "factor", getattr(op, "stride", 1)) for op in up)
    b = max(1, desired_output // max(gain, 1) - 2)
    if _output_or_zero(up, b) >= desired_output:
        b = 1
    while b <= max_bottleneck:
        out = _output_or_zero(up, b)
        if out >= desired_output:
            inp = inverse_length([*down, *bottleneck], b)
            return UNetSizes(inp, out, b)
        b += 1
    raise SizeError(f"no valid configuration gives {desired_output} output samples")


def _output_or_zero(ops: Sequence[SizeOp], n: int) -> int:
    try:
        return forward_length(ops, n)
    except SizeError:
        return 0


def valid_length_step(down: Sequence[SizeOp]) -> int:
    """Step between consecutive valid input (and output) lengths: the total down-sampling factor.

    With L levels of decimation by 2 that is 2**L (4096 for the paper's L=12): input
    ``147443 + m * 4096`` gives output ``16389 + m * 4096`` for every m >= 0.
    """
    return math.prod(getattr(op, "factor", getattr(op, "stride", 1)) for op in down)


def output_length_for(down: Sequence[SizeOp], bottleneck: Sequence[SizeOp], up: Sequence[SizeOp],
                      input_length: int) -> int:
    """Output length for ``input_length``, or :class:`SizeError` if the network cannot take it."""
    return forward_length([*down, *bottleneck, *up], input_length)


class SizePaths(NamedTuple):
    """A U-Net's size ops: the contracting path (input side first), the bottleneck, the expanding path."""

    down: list
    bottleneck: list
    up: list


class SizedNetwork:
    """Mixin: valid input/output lengths of a U-Net from its size ops.

    A subclass provides :meth:`size_paths` and sets ``self.training_sizes = self.sizes(n)`` for
    its desired training output ``n``. For images every length is one side of the tile: height and
    width follow the same arithmetic.
    """

    training_sizes: UNetSizes

    def size_paths(self) -> SizePaths:
        raise NotImplementedError

    def sizes(self, desired_output: int) -> UNetSizes:
        """Input/output lengths for at least ``desired_output`` output samples (pixels per side)."""
        return unet_sizes(*self.size_paths(), desired_output)

    def output_length_for(self, input_length: int) -> int:
        """Output length for ``input_length``; :class:`SizeError` if the network cannot take it."""
        return output_length_for(*self.size_paths(), input_length)

    def check_input_length(self, length: int) -> int:
        """The output length for ``length``, or a ValueError that says how to get a valid one."""
        try:
            return self.output_length_for(length)
        except SizeError as error:
            raise ValueError(f"input length {length} is not valid for this {type(self).__name__} ({error}); "
                             f"use model.sizes(n).input_length") from None

    @property
    def length_step(self) -> int:
        """Valid input (and output) lengths are spaced by this many samples: 2**L for the paper's nets."""
        return valid_length_step(self.size_paths().down)

    @property
    def input_length(self) -> int:
        """Input length (side, for images) of a training example."""
        return self.training_sizes.input_length

    @property
    def output_length(self) -> int:
        """Output length (side, for images) of a training example."""
        return self.training_sizes.output_length

    @property
    def context(self) -> int:
        """Input samples needed on each side of a training example's output window."""
        return self.training_sizes.context
