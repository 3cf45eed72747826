"""The first lags of correlations from their spectra, beyond float64: an exact inverse DFT by GEMMs.

BSSEval's normal equations need the track's correlations ``r[k]``, ``k < L``, to far below
float64's rounding of them (:mod:`.toeplitz`: with band-limited references they move the scores by
~0.01 dB with one ulp). Their spectrum ``S(f) = Σ_blocks X_f · conj(Y_f)`` from float64 FFTs
(:mod:`.correlations`) already has that accuracy where it matters: an FFT errs by ~eps of its
*block's* energy in every bin, so the weak bins of band-limited references (the empty band of MP3s,
~1e-15 of the energy) are accurate to ~1e-8 of themselves, and so is their sum over blocks. What
loses them is the float64 inverse transform: its rounding, eps of the energy at every lag, is white,
and in the empty band as large as the signal there. Here the inverse transform is exact to ~2^-73
of the energy (a bound; 2^-86 measured against mpmath), so the lags keep what the spectrum
knows. As a product of real matrices,

    r[k] = Σ_f A[k, f] · B[f]    with A = [c_f cos(2π f k / N) / N  |  −c_f sin(2π f k / N) / N],
                                      B = [Re S(f) ; Im S(f)],  c_f = 1 at f = 0, N/2 and 2 elsewhere,

and ``A`` from double-double twiddles. Both factors are cut (Ozaki, Ogita, Oishi and Rump 2012) into
two integer digits of :data:`DIGIT_BITS` bits and a float64 remainder; the digit products are integers
below 2^53, which float64 GEMMs give exactly in any summation order, and what involves a remainder is
~2^-18 of the result and needs only float64's accuracy. Six GEMMs of ``[L, 2F] @ [2F, columns]`` in
all: 6 ms for L = 512, N = 4096 and 32 columns (2 sources) on the project's 2-core CPU, 24 ms
for 128 (4 sources); the transform itself is made once per FFT length (0.12 s, 48 MB).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial

import torch

from .extended import dd_add, dd_mul, exponent_above, scaled, two_sum

#: bits per digit: the digit products of a level, ``(2^18 · 2^17 + 2^17 · 2^18)`` at most, summed
#: over ``2F = N + 2`` rows, stay below 2^53 (exact in float64, in any order) for N up to 2^16
DIGIT_BITS = 18
_LARGEST_FFT = 2 ** 16
#: 2π as a double-double
_TWO_PI = (6.283185307179586, 2.4492935982947064e-16)
#: Taylor terms of cos and sin on [0, π]: the first left out is below 2^-130 there
_TAYLOR_TERMS = 28


def _dd_constant(value: Fraction) -> tuple[float, float]:
    hi = float(value)
    return hi, float(value - Fraction(hi))


def twiddles(n_fft: int, device=None) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``cos(2π m / N)`` and ``sin(2π m / N)`` for ``m = 0 … N−1`` [N], each a double-double
    ``(hi, lo)`` accurate to ~2^-100: Taylor series in double-double arithmetic on angles folded
    into ``[0, π]`` (``N`` a power of two, so that ``m / N`` is exact)."""
    if n_fft & (n_fft - 1):
        raise ValueError(f"the FFT length must be a power of two, got {n_fft}")
    m = torch.arange(n_fft, dtype=torch.float64, device=device)
    folded = torch.minimum(m, n_fft - m)  # cos(2π − x) = cos x, sin(2π − x) = −sin x
    x = dd_mul(torch.full_like(m, _TWO_PI[0]), torch.full_like(m, _TWO_PI[1]), folded / n_fft, torch.zeros_like(m))
    square = dd_mul(*x, *x)

    def series(first: int) -> tuple[torch.Tensor, torch.Tensor]:  # Σ_n (−1)^n x^(2n) / (2n + first)!
        hi, lo = torch.zeros_like(m), torch.zeros_like(m)
        for n in reversed(range(_TAYLOR_TERMS)):
            c_hi, c_lo = _dd_constant(Fraction((-1) ** n, factorial(2 * n + first)))
            hi, lo = dd_mul(hi, lo, *square)
            hi, lo = dd_add(hi, lo, torch.full_like(m, c_hi))
            lo = lo + c_lo
        return two_sum(hi, lo)

    cos = series(0)
    sin_over_x = series(1)
    sin = dd_mul(*sin_over_x, *x)
    sign = torch.where(m > n_fft / 2, -1.0, 1.0).to(m)
    return cos, (sin[0] * sign, sin[1] * sign)


def _digits(hi: torch.Tensor, lo: torch.Tensor | None, exponent: torch.Tensor):
    """``hi + lo = 2^(e − 18) d0 + 2^(e − 36) r`` and ``r = d1 + rest``, with integers
    ``|d0| <= 2^18``, ``|d1| <= 2^17`` and ``|rest| <= 1/2`` (to ~2^-53 of it), given
    ``|hi + lo| < 2^e`` (``lo`` None: ``hi`` alone, and ``rest`` exact). Returns d0, d1, r, rest."""
    u = scaled(hi, DIGIT_BITS - exponent)
    d0 = torch.round(u)
    r = u - d0  # exact: within 1/2 of an integer below 2^53
    if lo is not None:
        r, r_lo = two_sum(r, scaled(lo, DIGIT_BITS - exponent))
    r = r.mul_(2.0 ** DIGIT_BITS)
    d1 = torch.round(r)
    rest = r - d1
    if lo is not None:
        rest += r_lo * 2.0 ** DIGIT_BITS
    return d0, d1, r, rest


@lru_cache(maxsize=2)
def _transform(n_fft: int, lags: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """``A``'s digits and remainder side by side, ``[d1 | d0 | rest]`` [L, 3 · 2F], and its
    exponent (made once per FFT length: 48 MB for L = 512, N = 4096)."""
    (cos_hi, cos_lo), (sin_hi, sin_lo) = twiddles(n_fft, device)
    n_freq = n_fft // 2 + 1
    index = (torch.arange(lags, device=device)[:, None] * torch.arange(n_freq, device=device)[None, :]) % n_fft
    weight = torch.full((n_freq,), 2.0 / n_fft, dtype=torch.float64, device=device)
    weight[0] = weight[-1] = 1.0 / n_fft  # a power of two: the products below are exact
    hi = torch.cat([cos_hi[index] * weight, -sin_hi[index] * weight], dim=1)  # [L, 2F]
    lo = torch.cat([cos_lo[index] * weight, -sin_lo[index] * weight], dim=1)
    hi[:, n_freq], lo[:, n_freq] = 0, 0  # the imaginary parts at 0 and N/2 count for nothing (irfft)
    hi[:, -1], lo[:, -1] = 0, 0
    exponent = int(torch.frexp(torch.tensor(2.0 / n_fft))[1])  # |A| <= 2/N < 2^exponent
    d0, d1, _, rest = _digits(hi, lo, torch.tensor(float(exponent), dtype=torch.float64, device=device))
    return torch.cat([d1, d0, rest], dim=1).contiguous(), exponent


def exact_lags(spectrum: torch.Tensor, n_fft: int, lags: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.irfft(spectrum, n_fft, dim=0)[:lags]``, exactly to ~2^-73 of ``Σ_f |A| |S|``
    (the energy, for a correlation) rather than float64's ~2^-50, as a double-double.

    Args:
        spectrum: [F, ...] complex128, F = N/2 + 1 (the half spectrum of real sequences).

    Returns:
        ``(hi, lo)`` [lags, ...] float64.
    """
    n_freq = spectrum.shape[0]
    if n_fft & (n_fft - 1):
        raise ValueError(f"the FFT length must be a power of two, got {n_fft}")
    if n_freq != n_fft // 2 + 1:
        raise ValueError(f"a half spectrum of {n_fft} points has {n_fft // 2 + 1} bins, got {n_freq}")
    if n_fft > _LARGEST_FFT:
        raise ValueError(f"FFTs of at most {_LARGEST_FFT} points keep the digit products exact, got {n_fft}")
    shape = spectrum.shape[1:]
    n = 2 * n_freq
    parts = torch.view_as_real(spectrum.reshape(n_freq, -1))  # [F, J, 2]
    b = torch.cat([parts[..., 0], parts[..., 1]], dim=0)  # [2F, J]: B
    b_exponent = exponent_above(b, dims=0)  # [1, J]
    b0, b1, r, b_rest = _digits(b, None, b_exponent)  # B̂ = 2^-18 b0 + 2^-36 r, r = b1 + rb
    wide, a_exponent = _transform(n_fft, lags, spectrum.device)  # [a1 | a0 | ra]
    low, lowest = 2.0 ** (-3 * DIGIT_BITS), 2.0 ** (-4 * DIGIT_BITS)
    # Â B̂ = 2^-36 a0 b0 + 2^-54 (a0 b1 + a1 b0) + 2^-54 (a0 rb + ra b0) + 2^-72 (a1 + ra)(b1 + rb)
    level0 = wide[:, n:2 * n] @ b0  # exact: integers below 2^50
    level1 = wide[:, :2 * n] @ torch.cat([b0, b1])  # a1 b0 + a0 b1, exact: integers below 2^50
    # what involves a remainder, ~2^-18 of the result, in float64: a1 (2^-72 r) + a0 (2^-54 rb) + ra (2^-54 b0 + 2^-72 r)
    right = torch.cat([lowest * r, low * b_rest, low * b0 + lowest * r])
    rest = wide @ right
    hi, lo = two_sum(level0 * 2.0 ** (-2 * DIGIT_BITS), level1 * low)
    hi, lo = dd_add(hi, lo, rest)
    exponent = a_exponent + b_exponent
    return scaled(hi, exponent).reshape(lags, *shape), scaled(lo, exponent).reshape(lags, *shape)
