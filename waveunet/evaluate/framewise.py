"""BSSEval v4's framewise criteria from correlations, without filtering any frame.

museval filters each frame of the references with the distortion filters (the whole-track least
squares solution) and measures four energies of the results. Every one of them is a quadratic or
bilinear form in the filters whose matrix is a correlation of the frame's signals: for the
projection ``y = Σ_p c_p ∗ x_p`` of a frame zero-padded by ``L − 1`` samples (museval's
``_project``),

    ‖y‖² = Σ_m w_m ⟨R_t(m), A(m)⟩,   ⟨y, ŝ⟩ = Σ_{p,a} c_p[a] D_t[p, a],

with ``R_t(m)`` the frame's reference correlations at lag ``m``, ``D_t`` their correlations with
the estimate, ``A(m)`` the filters' own correlations and ``w_0 = 1``, ``w_m = 2``. With the frame
correlations made once (:mod:`.correlations`), the criteria of any set of filters cost a few small
tensor contractions, so the scores of two solutions (exact and float64-rounded) come at once and
their difference measures how far a float64 solver such as museval's can be off.

Each energy of an error (``e_spat``, ``e_interf``, ``e_artif``) is a difference of such forms. Its
rounding error is estimated from the correlations' own (a few ulps of the frame energy times the
ℓ2 norms of the filter correlations); an error energy below that is not resolved, and its ratio is
reported as that bound gives it (a lower bound on the true dB value) and marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

#: rounding of a correlation entry, in units of eps times the frame's largest channel energy
#: (blocked FFTs of 4096 points: within an ulp or two, measured at 8192), times a few standard deviations
_CORRELATION_ULPS = 16.0


@dataclass
class FrameData:
    """What the criteria need of each frame t (all float64).

    Attributes:
        refs: [T, K, K, L], ``refs[t, p, q, k] = Σ_n x_p[n + k] x_q[n]`` within frame t (``K``
            reference channels ordered (source, channel)).
        cross: [T, K, K, L], ``cross[t, e, q, k] = Σ_n ŝ_e[n + k] x_q[n]`` (``e`` estimate channels).
        estimate_energy: [T, S], ``‖ŝ_j‖²`` over the frame.
        error_energy: [T, S], ``‖ŝ_j − s_j‖²`` over the frame (SDR's denominator, summed directly).
    """

    refs: torch.Tensor
    cross: torch.Tensor
    estimate_energy: torch.Tensor
    error_energy: torch.Tensor
    n_sources: int

    # the correlations laid out as matrices for each contraction with the filters (one product per
    # source), made once for every set of filters scored

    @cached_property
    def own_refs(self) -> torch.Tensor:
        """[T, S(j), C, C, L]: source j's block of ``refs``."""
        t, k, _, lags = self.refs.shape
        s, c = self.n_sources, k // self.n_sources
        return self.refs.reshape(t, s, c, s, c, lags).diagonal(dim1=1, dim2=3).permute(0, 4, 1, 2, 3)

    @cached_property
    def refs_matrix(self) -> torch.Tensor:
        """[T, K·K·L]: ``refs[t, p, q, m]``."""
        return self.refs.reshape(self.refs.shape[0], -1)

    @cached_property
    def own_matrix(self) -> torch.Tensor:
        """[S, T, C·C·L]: ``refs[t, (j, p), (j, q), m]``."""
        return self.own_refs.permute(1, 0, 2, 3, 4).flatten(2).contiguous()

    @cached_property
    def refs_to_own_matrix(self) -> torch.Tensor:
        """[S, T, K·C·L]: ``refs[t, p, (j, q), m]``."""
        t, k, _, lags = self.refs.shape
        return self.refs.reshape(t, k, self.n_sources, k // self.n_sources, lags).permute(2, 0, 1, 3, 4).flatten(2).contiguous()

    @cached_property
    def own_to_refs_matrix(self) -> torch.Tensor:
        """[S, T, K·C·L]: ``refs[t, (j, q), p, m]`` in the order (p, q, m)."""
        t, k, _, lags = self.refs.shape
        return self.refs.reshape(t, self.n_sources, k // self.n_sources, k, lags).permute(1, 0, 3, 2, 4).flatten(2).contiguous()

    @cached_property
    def cross_matrix(self) -> torch.Tensor:
        """[S, T, C·K·L]: ``cross[t, (j, o), p, a]``."""
        t, k, _, lags = self.cross.shape
        return self.cross.reshape(t, self.n_sources, k // self.n_sources, k, lags).transpose(0, 1).flatten(2).contiguous()


def _per_source(matrix: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``Σ_x matrix[j, t, x] · coefficients[j, x…]`` -> [T, S]."""
    return torch.bmm(matrix, coefficients.reshape(coefficients.shape[0], -1, 1))[..., 0].T


@dataclass
class Criteria:
    """SDR, ISR, SIR, SAR [4, S, T] in dB, and [4, S, T] bool: the error energy is within its
    rounding bound's 1e-3 dB (not resolved; the value is then computed with the bound)."""

    scores: torch.Tensor
    unresolved: torch.Tensor


def criteria(frames: FrameData, filters: torch.Tensor, own_filters: torch.Tensor, n_sources: int) -> Criteria:
    """museval's ``_bss_crit`` (images version) for every frame.

    Args:
        frames: :class:`FrameData`.
        filters: [S, K, L, C], ``filters[j, p, a, o]``: reference channel ``p`` at delay ``a`` into
            channel ``o`` of estimate ``j``'s projection onto all references.
        own_filters: [S, C, L, C]: the same onto its own reference's channels.
        n_sources: S.

    Returns:
        :class:`Criteria`.
    """
    refs, cross = frames.refs, frames.cross
    n_frames, k, _, lags = refs.shape
    c = k // n_sources
    eps = torch.finfo(refs.dtype).eps
    weights = torch.full((lags,), 2.0, dtype=refs.dtype, device=refs.device)
    weights[0] = 1.0
    own_refs = frames.own_refs

    # filter correlations: A(m)[p, q] = Σ_o Σ_a c[p, a, o] c[q, a + m, o], laid out (p, q, m)
    joint_corr = _filter_correlations(filters, filters, lags)  # [S, 2L−1 → m in (−L, L), K, K]
    own_corr = _filter_correlations(own_filters, own_filters, lags)  # [S, ., C, C]
    mixed_corr = _filter_correlations(filters, own_filters, lags)  # [S, ., K, C]: joint p, own q
    positive = slice(0, lags)  # m = 0 … L−1 at indices 0 … L−1; m = −1 … −(L−1) at the end, reversed

    def symmetric(corr):  # Σ_m w_m ⟨R(m), A(m)⟩: coefficients (p, q, m) of a symmetric form
        return (corr[:, positive] * weights[None, :, None, None]).permute(0, 2, 3, 1)

    energy_y = frames.refs_matrix @ symmetric(joint_corr).reshape(n_sources, -1).T  # ‖P ŝ‖²: [T, S]
    energy_own = _per_source(frames.own_matrix, symmetric(own_corr))  # ‖P_j ŝ‖²
    # ⟨P ŝ, P_j ŝ⟩: lags m >= 0 use R(p, (j,q), m), lags m < 0 use R((j,q), p, −m)
    negative = torch.cat([mixed_corr[:, :1] * 0, mixed_corr[:, lags:].flip(1)], dim=1)  # m = 0, −1, …, −(L−1)
    energy_mixed = (_per_source(frames.refs_to_own_matrix, mixed_corr[:, positive].permute(0, 2, 3, 1))
                    + _per_source(frames.own_to_refs_matrix, negative.permute(0, 2, 3, 1)))
    # ⟨P ŝ, ŝ⟩ = Σ c[j, p, a, o] cross[(j, o), p, a]; ⟨P_j ŝ, s⟩ = Σ c_j[i, a, o] refs[(j, o), (j, i), a]
    inner_y = _per_source(frames.cross_matrix, filters.permute(0, 3, 1, 2))
    inner_own = _per_source(frames.own_matrix, own_filters.permute(0, 3, 1, 2))
    energy_s = own_refs[..., 0].diagonal(dim1=-2, dim2=-1).sum(-1)  # ‖s_j‖²: [T, S]

    # rounding bounds (absolute) of each form Σ_i a_i c_i, its correlations c_i off by independent
    # roundings of ~ulps · the scale of their sums: a few standard deviations, ulps · scale · ‖a‖₂
    # (the worst case, with ‖a‖₁, is far too pessimistic for the large filters of ill-conditioned
    # systems). References' forms scale with the frame's largest reference energy (the own ones
    # with their source's), the estimate's with that times the estimate's energy, square-rooted.
    ulps = _CORRELATION_ULPS * eps
    largest = refs[..., 0].diagonal(dim1=-2, dim2=-1).amax(-1)[:, None]  # [T, 1]
    reference_scale = ulps * largest
    own_scale = ulps * own_refs[..., 0].diagonal(dim1=-2, dim2=-1).amax(-1)  # [T, S]
    cross_scale = ulps * (largest * frames.estimate_energy).sqrt()

    def norm(tensor):  # ‖·‖₂ per source over the remaining axes
        return tensor.square().sum(dim=tuple(range(1, tensor.ndim))).sqrt()[None]

    bound_y = reference_scale * 2 * norm(joint_corr)
    bound_own = own_scale * 2 * norm(own_corr)
    bound_mixed = reference_scale * 2 * norm(mixed_corr)
    bound_inner_y = cross_scale * norm(filters)
    bound_inner_own = own_scale * norm(own_filters)

    spatial = energy_own - 2 * inner_own + energy_s
    interference = energy_y - 2 * energy_mixed + energy_own
    artifacts = frames.estimate_energy - 2 * inner_y + energy_y
    spatial_bound = bound_own + 2 * bound_inner_own + 4 * eps * (energy_own.abs() + 2 * inner_own.abs() + energy_s)
    interference_bound = bound_y + 2 * bound_mixed + bound_own + 4 * eps * (energy_y + 2 * energy_mixed.abs() + energy_own)
    artifacts_bound = bound_inner_y * 2 + bound_y + 4 * eps * (frames.estimate_energy + 2 * inner_y.abs() + energy_y)
    if n_sources == 1:  # P = P_j: museval's interference is exactly zero
        interference = torch.zeros_like(interference)
        interference_bound = torch.zeros_like(interference_bound)

    scores, unresolved = [], []
    for numerator, denominator, bound in (
            (energy_s, frames.error_energy, torch.zeros_like(energy_s)),
            (energy_s, spatial, spatial_bound),
            (energy_own, interference, interference_bound),
            (energy_y, artifacts, artifacts_bound)):
        value, vague = _resolved_db(numerator, denominator, bound)
        scores.append(value)
        unresolved.append(vague)
    return Criteria(torch.stack(scores).transpose(1, 2), torch.stack(unresolved).transpose(1, 2))


#: dB of uncertainty from rounding above which a ratio counts as not resolved
RESOLUTION_DB = 1e-3


def _resolved_db(numerator: torch.Tensor, denominator: torch.Tensor, bound: torch.Tensor):
    """``10 log10(num / den)`` (+inf where ``den`` is exactly 0, as museval's ``_safe_db``), with
    ``den`` raised to ``bound`` where it is below it; and where the bound leaves more than
    :data:`RESOLUTION_DB` of uncertainty."""
    exact_zero = (denominator == 0) & (bound == 0)
    floored = torch.maximum(denominator, bound)
    value = 10 * torch.log10(numerator / floored)
    value = torch.where(exact_zero, torch.inf, value)
    # d(10 log10 den) = 4.34 · bound / den
    vague = (bound > 0) & (10 / torch.log(torch.tensor(10.0, dtype=bound.dtype)) * bound
                           > RESOLUTION_DB * floored)
    return value, vague


def _filter_correlations(a: torch.Tensor, b: torch.Tensor, lags: int) -> torch.Tensor:
    """``out[j, m, p, q] = Σ_o Σ_d a[j, p, d, o] b[j, q, d + m, o]`` for ``m`` in ``(−L, L)``,
    lag ``m`` at index ``m mod (2L − 1)``.

    Args:
        a: [S, P, L, C]; b: [S, Q, L, C].

    Returns:
        [S, 2L − 1, P, Q].
    """
    n = 2 * lags - 1
    n_fft = 1 << (n - 1).bit_length()
    a_spec = torch.fft.rfft(a, n=n_fft, dim=2).permute(0, 2, 1, 3)  # [S, F, P, C]
    b_spec = torch.fft.rfft(b, n=n_fft, dim=2).permute(0, 2, 3, 1)  # [S, F, C, Q]
    spectrum = a_spec.conj() @ b_spec  # [S, F, P, Q]
    full = torch.fft.irfft(spectrum, n=n_fft, dim=1)  # lag m at m mod n_fft
    return torch.cat([full[:, :lags], full[:, n_fft - lags + 1:]], dim=1)
