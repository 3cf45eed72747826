"""The exact inverse DFT behind the track's correlations (waveunet.evaluate.inverse_dft), against
mpmath at 40 digits: double-double twiddles, and lags exact to far below float64's rounding on
spectra with 15 decades of dynamic range (those of band-limited references)."""

import mpmath
import pytest
import torch

from waveunet.evaluate.inverse_dft import exact_lags, twiddles

mpmath.mp.dps = 40


def mp(value) -> mpmath.mpf:
    return mpmath.mpf(float(value))


@pytest.mark.parametrize("n_fft", [64, 8192])
def test_twiddles_are_double_doubles_of_cos_and_sin(n_fft):
    (cos_hi, cos_lo), (sin_hi, sin_lo) = twiddles(n_fft)
    worst = 0
    for m in list(range(0, n_fft, max(1, n_fft // 97))) + [n_fft // 4, n_fft // 2, n_fft - 1]:
        angle = 2 * mpmath.pi * m / n_fft
        worst = max(worst, abs(mp(cos_hi[m]) + mp(cos_lo[m]) - mpmath.cos(angle)),
                    abs(mp(sin_hi[m]) + mp(sin_lo[m]) - mpmath.sin(angle)))
    assert worst < 2.0 ** -100


def exact_inverse(spectrum: torch.Tensor, n_fft: int, k: int, column: int) -> mpmath.mpf:
    """irfft(spectrum, n_fft)[k] at 40 digits."""
    total = mpmath.mpf(0)
    for f in range(n_fft // 2 + 1):
        edge = f in (0, n_fft // 2)
        angle = 2 * mpmath.pi * f * k / n_fft
        value = spectrum[f, column]
        term = mp(value.real) * mpmath.cos(angle) - (0 if edge else mp(value.imag) * mpmath.sin(angle))
        total += term if edge else 2 * term
    return total / n_fft


@pytest.mark.parametrize("n_fft, lags", [(64, 16), (1024, 512)])
def test_exact_lags_against_mpmath(n_fft, lags):
    """To 2^-80 of Σ|A||S|, where float64's irfft is off by more than 2^-60 (so this test would
    see a float64 transform): the weak bins, 1e-15 of the strong ones, keep their share."""
    n_freq = n_fft // 2 + 1
    generator = torch.Generator().manual_seed(0)
    decay = torch.logspace(0, -15, n_freq, dtype=torch.float64)[:, None, None]
    spectrum = torch.randn(n_freq, 2, 2, dtype=torch.complex128, generator=generator) * decay
    hi, lo = exact_lags(spectrum, n_fft, lags)
    assert hi.shape == lo.shape == (lags, 2, 2)
    float64 = torch.fft.irfft(spectrum, n=n_fft, dim=0)[:lags]
    flat, flat_hi, flat_lo, flat64 = (t.reshape(t.shape[0], -1) for t in (spectrum, hi, lo, float64))
    ours = theirs = 0
    for column in range(4):
        scale = 2 * flat[:, column].abs().sum().item() / n_fft
        for k in range(0, lags, max(1, lags // 12)):
            exact = exact_inverse(flat, n_fft, k, column)
            ours = max(ours, float(abs(mp(flat_hi[k, column]) + mp(flat_lo[k, column]) - exact)) / scale)
            theirs = max(theirs, float(abs(mp(flat64[k, column]) - exact)) / scale)
    assert ours < 2.0 ** -80
    assert theirs > 2.0 ** -60


def test_exact_lags_refuses_what_it_cannot_do_exactly():
    with pytest.raises(ValueError, match="power of two"):
        exact_lags(torch.zeros(49, 1, dtype=torch.complex128), 96, 8)
    with pytest.raises(ValueError, match="bins"):
        exact_lags(torch.zeros(10, 1, dtype=torch.complex128), 64, 8)
    with pytest.raises(ValueError, match="at most"):
        exact_lags(torch.zeros(2 ** 16 + 1, 1, dtype=torch.complex128), 2 ** 17, 8)
