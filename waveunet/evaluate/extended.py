"""Products by block-Toeplitz matrices to 64 bits beyond their largest terms, from float64 FFTs.

The normal equations of BSSEval's distortion filters are symmetric positive definite but, for
band-limited references (MP3-coded stems lose everything above about 16 kHz), their condition number
reaches 1e15-1e18: a float64 solve leaves rounding noise along the near-null directions, and the
framewise metrics turn that noise into dB. Iterative refinement fixes the solve if its residuals
``d − T x`` are computed well beyond float64, which is what this module does.

Ozaki's error-free splitting: each operand is scaled by a power of two to integers and cut into
balanced 16-bit digits. A product of two digit sequences is a convolution of small integers; a
float64 FFT computes it with an error far below one half, so rounding the result gives it exactly
(the largest distance to an integer is checked). Summing the digit products by their weight as a
double-double (``hi + lo``, Dekker 1971) gives the product of the digit-truncated operands (the
matrix to 64 bits below its largest entry, the vector to 80) exactly: to ~2^-64 of the largest
terms, where float64 rounding leaves 2^-53 and more after cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: bits per digit: products of two digits, summed over 2L−1 lags, K signals and 4 digit pairs, stay
#: below 2^48 for L = 512, K = 16; float64 FFTs of that size err by less than 0.05 on them
DIGIT_BITS = 16
#: digits of the matrix: 64 bits below its largest entry's power of two (float64 carries 53); the
#: entries' truncation below 2^-65 of the largest perturbs the system by far less than its rounding
MATRIX_DIGITS = 4
#: digits of the vector: 80 bits, since a solution's small entries matter where its large ones,
#: along near-null directions, nearly cancel (64 bits leave residuals near 1e-18)
VECTOR_DIGITS = 5
#: an FFT result farther than this from an integer means the exactness argument failed
_ROUNDING_GUARD = 0.25


def two_sum(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``s + e == a + b`` exactly, ``s = fl(a + b)`` (Knuth)."""
    s = a + b
    b_virtual = s - a
    e = (a - (s - b_virtual)) + (b - b_virtual)
    return s, e


def dd_add(hi: torch.Tensor, lo: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The double-double ``hi + lo`` plus a float64 ``value``, renormalised."""
    s, e = two_sum(hi, value)
    return two_sum(s, e + lo)


def dd_add_dd(a_hi, a_lo, b_hi, b_lo) -> tuple[torch.Tensor, torch.Tensor]:
    """The sum of two double-doubles, renormalised (to ~2^-104 relative)."""
    s, e = two_sum(a_hi, b_hi)
    return two_sum(s, e + (a_lo + b_lo))


def scaled(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``x · 2^exponent`` exactly (``exponent`` integers, broadcast against x), as ``torch.ldexp``
    but as a product with the power of two where that is a normal float64, which is many times
    faster on large tensors."""
    if bool((exponent.abs() < 1000).all()):
        return x * torch.ldexp(torch.ones_like(exponent, dtype=x.dtype), exponent.to(torch.int32))
    return torch.ldexp(x, exponent)


#: Veltkamp's splitter for float64: 2^27 + 1
_SPLITTER = 134217729.0


def two_product(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p + e == a · b`` exactly, ``p = fl(a · b)`` (Dekker's product; torch has no fused
    multiply-add)."""
    p = a * b
    a_big = _SPLITTER * a
    a_hi = a_big - (a_big - a)
    a_lo = a - a_hi
    b_big = _SPLITTER * b
    b_hi = b_big - (b_big - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def dd_mul(a_hi, a_lo, b_hi, b_lo) -> tuple[torch.Tensor, torch.Tensor]:
    """The product of two double-doubles, renormalised (to ~2^-104 relative)."""
    p, e = two_product(a_hi, b_hi)
    return two_sum(p, e + (a_hi * b_lo + a_lo * b_hi))


def exponent_above(x: torch.Tensor, dims) -> torch.Tensor:
    """``e`` with ``max |x| < 2^e`` over ``dims`` (kept as size 1), as ``x``'s dtype; 1 for all
    zeros."""
    largest = x.abs().amax(dim=dims, keepdim=True)
    return torch.frexp(torch.where(largest > 0, largest, torch.ones_like(largest)))[1].to(x.dtype)


def split_digits(x: torch.Tensor, dims: tuple[int, ...], n_digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ≈ 2^(e − 16 D) · Σ_i digits[i] · 2^(16 i)`` with integer ``digits`` in ``[−2^15, 2^15]``.

    The scale ``2^e`` (``>= max |x|`` over ``dims``) is shared along ``dims``; the error is below
    ``2^(e − 16 D − 1)`` (2.7e-20 of the largest entry for ``D = 4``).

    Returns:
        ``digits`` [D, *x.shape] (float64 holding integers) and ``exponent`` (``e − 16 D``),
        shaped like ``x`` with ``dims`` kept as size 1.
    """
    exponent = exponent_above(x, dims) - DIGIT_BITS * n_digits  # |x| < 2^(exponent + 16 D)
    rest = torch.round(scaled(x, -exponent))  # an integer below 2^(16 D), exact in float64
    digits = []
    for i in reversed(range(1, n_digits)):
        weight = 2.0 ** (DIGIT_BITS * i)
        digit = torch.round(rest / weight)
        rest = rest - digit * weight  # exact: both are integers of at most 53 significant bits
        digits.append(digit)
    digits.append(rest)
    return torch.stack(digits[::-1]), exponent


@dataclass
class ExactToeplitz:
    """A block-Toeplitz ``T``, for products ``T x`` to ~2^-64 of their terms (:meth:`product`)
    besides plain float64 ones (:meth:`approximate`).

    Args:
        blocks: [batch, L, K, K], ``blocks[:, k] = R(k)``; blocks_lo: their low parts, if the
            blocks are double-doubles ``blocks + blocks_lo`` (the products are then those of the
            sum).
    """

    blocks: torch.Tensor
    blocks_lo: torch.Tensor | None = None

    def __post_init__(self):
        from .toeplitz import toeplitz_kernel, toeplitz_spectrum

        lags = self.blocks.shape[1]
        self.n_fft = _fft_length(3 * lags - 2)
        self.kernel = toeplitz_kernel(self.blocks)  # [batch, 2L−1, K, K]
        # contiguous: torch's CPU matmul of complex batches loops over the batch otherwise
        self.spectrum = toeplitz_spectrum(self.blocks, self.n_fft).contiguous()
        self._digits = None

    def _kernel_digits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's digit spectra, laid out [batch, F, D·K, K] for the products, and exponent
        [batch, 1, 1, 1], made once."""
        if self._digits is None:
            digits, exponent = split_digits(self.kernel, dims=(1, 2, 3), n_digits=MATRIX_DIGITS)
            if self.blocks_lo is not None:  # below the high part's ulp: it lands in the lowest digit
                from .toeplitz import toeplitz_kernel

                digits[0] += torch.round(scaled(toeplitz_kernel(self.blocks_lo), -exponent))
            spectra = torch.fft.rfft(digits, n=self.n_fft, dim=2)  # [D, batch, F, K, K]
            batch, n_freq, k = spectra.shape[1], spectra.shape[2], spectra.shape[3]
            self._digits = spectra.permute(1, 2, 0, 3, 4).reshape(batch, n_freq, -1, k).contiguous(), exponent
        return self._digits

    def approximate(self, x: torch.Tensor) -> torch.Tensor:
        """``T x`` in float64 by FFT. x: [batch, L, K, M]."""
        lags = x.shape[1]
        product = self.spectrum @ torch.fft.rfft(x, n=self.n_fft, dim=1).contiguous()
        return torch.fft.irfft(product, n=self.n_fft, dim=1)[:, lags - 1:2 * lags - 1]

    def product(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``T x`` as a double-double ``(hi, lo)``, x [batch, L, K, M] float64 (split per column)."""
        batch, lags, k, m = x.shape
        kernel_digits, kernel_exponent = self._kernel_digits()
        digits, exponent = split_digits(x, dims=(1, 2), n_digits=VECTOR_DIGITS)  # [batch, 1, 1, M]
        x_spec = torch.fft.rfft(digits, n=self.n_fft, dim=2)  # [D, batch, F, K, M]
        n_freq = x_spec.shape[2]
        # every digit pair at once: [batch, F, D·K, K] @ [batch, F, K, D·M]
        a, b = MATRIX_DIGITS, VECTOR_DIGITS
        right = x_spec.permute(1, 2, 3, 0, 4).reshape(batch, n_freq, k, b * m).contiguous()
        pairs = (kernel_digits @ right).reshape(batch, n_freq, a, k, b, m).permute(0, 1, 3, 5, 2, 4)
        # the pairs of equal weight 2^(16 s) summed before the inverse transform, as one product
        # with the 0/1 matrix of i + j = s
        levels = pairs.reshape(batch, n_freq, k, m, a * b) @ _weights(a, b, pairs.dtype, pairs.device)
        levels = levels.permute(4, 0, 1, 2, 3)  # [levels, batch, F, K, M]
        values = torch.fft.irfft(levels, n=self.n_fft, dim=2)[:, :, lags - 1:2 * lags - 1]
        integers = torch.round(values)
        if bool(((values - integers).abs() > _ROUNDING_GUARD).any()):
            raise ArithmeticError("exact Toeplitz product: FFT rounding too large for the digit size")
        hi = torch.zeros_like(x)
        lo = torch.zeros_like(x)
        for s in reversed(range(MATRIX_DIGITS + VECTOR_DIGITS - 1)):  # largest weight first keeps (hi, lo) normalised
            hi, lo = dd_add(hi, lo, integers[s] * 2.0 ** (DIGIT_BITS * s))
        scale = kernel_exponent + exponent  # powers of two: exact
        return scaled(hi, scale), scaled(lo, scale)


def _weights(a: int, b: int, dtype, device) -> torch.Tensor:
    """[a·b, a + b − 1]: 1 where digit pair (i, j) has weight level i + j."""
    weights = torch.zeros(a, b, a + b - 1, dtype=dtype, device=device)
    for i in range(a):
        for j in range(b):
            weights[i, j, i + j] = 1
    return weights.reshape(a * b, a + b - 1)


def _fft_length(n: int) -> int:
    """The smallest 5-smooth integer ``>= n``."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best
