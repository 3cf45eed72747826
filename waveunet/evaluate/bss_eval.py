"""BSSEval v4 (``museval.metrics.bss_eval``, images version) in torch.

Following Vincent et al. (2006) and Liutkus et al. (2018), each estimated source image ``ŝ_j`` is
projected with multichannel FIR filters of ``L`` taps onto

* the delayed copies of its own reference image ``s_j``, giving ``P_j ŝ_j``, and
* the delayed copies of all reference images, giving ``P ŝ_j``,

and decomposed as ``s_true = s_j``, ``e_spat = P_j ŝ_j − s_j``, ``e_interf = P ŝ_j − P_j ŝ_j``,
``e_artif = ŝ_j − P ŝ_j``. SDR, ISR, SIR and SAR are energy ratios of these parts, in dB.

Version 4 estimates the filters once, by least squares over the whole track, and then scores each
frame: the filters are applied to the frame of the references alone, the filtered frame keeping its
``L − 1`` samples of tail. A frame where any reference or estimate is silent scores NaN.

Here (the ``fast`` backend):

1. one pass of blocked FFTs gives the correlations of every reference channel with every reference
   and estimate channel within each frame; the sum of the frames' spectra, transformed back
   exactly (:mod:`.inverse_dft`), plus the few products across frame boundaries, is the whole
   track's, beyond float64 (:mod:`.correlations`): with band-limited references (MP3s) an ulp of
   them moves the scores by ~0.003 dB;
2. the least-squares systems are solved exactly, not to float64 rounding (:mod:`.toeplitz`): with
   band-limited references they are so ill-conditioned that a dense solve, museval's, returns
   rounding noise along the near-null directions, which the framewise metrics turn into dB;
3. every frame's criteria are contractions of its correlations with the filters' (:mod:`.framewise`),
   for the exact filters and for the filters after a rounding-level change of the correlations:
   the difference is how far a float64 evaluator, museval included, can be off (:class:`Conditioning`).

Where museval is determined its scores are reproduced to 1e-7-1e-4 dB; where it is not, these
scores are stable (at most 8.5e-5 dB under rescalings of the data by 1 ± 1e-9 and 1 + 5e-9) and the
frames are flagged. All arithmetic is float64 (double-doubles where it says so), on any torch
device.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .correlations import BlockPlan, TrackSpectrum, frame_correlations, track_correlations, track_total
from .extended import two_sum
from .framewise import Criteria, FrameData, criteria
from .threads import cpu_threads, with_helper_thread
from .toeplitz import DENSE_SIZE, NormalSystem

#: museval's ``np.finfo(float).eps``, added to the diagonal of every Gram matrix before solving
_EPS = torch.finfo(torch.float64).eps

#: how far (dB) a rounding-level change of the correlations may move a score before its frame
#: counts as ill-conditioned: museval's digits there are not reproducible to our 1e-3 dB (a third
#: of it, since one random change only estimates the spread of such changes)
SENSITIVITY_DB = 3e-4

BACKENDS = ("fast", "museval")
#: museval's order of the four criteria
CRITERIA = ("SDR", "ISR", "SIR", "SAR")


class BSSEvalScores(NamedTuple):
    """Framewise scores in dB, each [sources, frames], in the order museval returns them."""

    sdr: np.ndarray | torch.Tensor
    isr: np.ndarray | torch.Tensor
    sir: np.ndarray | torch.Tensor
    sar: np.ndarray | torch.Tensor


@dataclass
class Conditioning:
    """How well determined each score is (fast backend).

    Attributes:
        sensitivity: [4, sources, frames] dB, SDR, ISR, SIR, SAR: how far the scores move, to
            first order, when the correlations behind the filters' systems are off by a few ulps
            (a float64 evaluator's own rounding, museval's included); 0 for SDR, which needs no
            filters; NaN where the frame is NaN.
        unresolved: [4, sources, frames] bool: an error energy within its rounding bound (its ratio
            is then a lower bound).
        ill_conditioned: [sources, frames] bool: some score of the frame moves by more than
            :data:`SENSITIVITY_DB` or is unresolved.
        condition: [sources] the condition number of the system behind SIR/SAR (all references)
            and ``own_condition`` [sources] that behind ISR (the source's own reference): the
            spectral estimate ``max λ(S(f)) / min λ(S(f))`` of :func:`spectral_condition`.
        regularized: [sources] bool: the all-references system's solution is not determined by
            float64 data and was ridge-regularised (``own_regularized`` likewise for the own
            systems), with ``ridge`` (``own_ridge``) times the mean eigenvalue.
    """

    sensitivity: np.ndarray
    unresolved: np.ndarray
    ill_conditioned: np.ndarray
    condition: np.ndarray
    own_condition: np.ndarray
    regularized: np.ndarray
    own_regularized: np.ndarray
    ridge: np.ndarray
    own_ridge: np.ndarray


@dataclass
class BSSEvalResult:
    scores: BSSEvalScores
    conditioning: Conditioning | None  # None for the museval backend


def bss_eval(references, estimates, window: int = 44100, hop: int = 44100, backend: str = "fast",
             device: str | torch.device | None = None) -> BSSEvalScores:
    """BSSEval v4 image metrics per source and frame, as ``museval.evaluate``.

    Estimates longer or shorter than the references are truncated or zero-padded at the end, as
    museval does, with a warning. On the CPU, evaluations running at once share torch's threads
    (see :mod:`~waveunet.evaluate.threads`).

    Args:
        references: true source images [sources, time, channels] (or [sources, time]), numpy
            array or tensor; no source may be all zeros.
        estimates: estimated images, same layout; estimate ``j`` is scored against reference ``j``.
        window, hop: frame length and hop in samples (museval: ``int(win * rate)``).
        backend: ``"fast"`` (this module, torch) or ``"museval"`` (museval itself, numpy).
        device: torch device of the fast backend; defaults to the references' device (CPU for
            numpy input).

    Returns:
        SDR, ISR, SIR, SAR, each [sources, frames]: numpy arrays for numpy input, float64 tensors
        on ``device`` for tensor input. NaN for frames where some reference or estimate is silent.

    Raises:
        ValueError: shapes that differ beyond the time axis, or a silent source (museval's checks).
    """
    return evaluate_images(references, estimates, window, hop, backend, device).scores


def evaluate_images(references, estimates, window: int = 44100, hop: int = 44100, backend: str = "fast",
                    device: str | torch.device | None = None) -> BSSEvalResult:
    """:func:`bss_eval` and, for the fast backend, the :class:`Conditioning` of its scores."""
    as_tensor = isinstance(references, torch.Tensor)
    if device is None:
        device = references.device if as_tensor else "cpu"
    device = torch.device(device)
    references = _as_float64(references, device)
    estimates = pad_or_truncate(_as_float64(estimates, device), references.shape[1])
    validate(references, estimates, silence=backend != "fast")  # the fast path checks it on the way

    conditioning = None
    if backend == "fast":
        scores, conditioning = bss_eval_v4(references, estimates, int(window), int(hop))
    elif backend == "museval":
        import museval

        scores = museval.evaluate(references.cpu().numpy(), estimates.cpu().numpy(),
                                  win=int(window), hop=int(hop))
        scores = torch.from_numpy(np.stack(scores)).to(device)
    else:
        raise ValueError(f"unknown BSSEval backend {backend!r}; expected one of {BACKENDS}")
    if not as_tensor:
        scores = scores.cpu().numpy()
    return BSSEvalResult(BSSEvalScores(*scores), conditioning)


def _as_float64(signals, device) -> torch.Tensor:
    """[sources, time, channels] float64 tensor (a view of a float64 numpy array on the CPU);
    [sources, time] gains a channel axis (museval's ``np.atleast_3d``)."""
    signals = torch.as_tensor(signals).to(device=device, dtype=torch.float64)
    return signals[..., None] if signals.ndim == 2 else signals


def pad_or_truncate(estimates: torch.Tensor, length: int) -> torch.Tensor:
    """Estimates [sources, time, channels] cut or zero-padded at the end to ``length`` samples,
    as museval's ``pad_or_truncate``, with a warning."""
    found = estimates.shape[1]
    if found == length:
        return estimates
    action = "truncated" if found > length else "zero-padded at the end"
    warnings.warn(f"estimates have {found} samples but the references {length}: {action} "
                  f"to {length}, as museval does", stacklevel=3)
    return F.pad(estimates[:, :length], (0, 0, 0, max(0, length - found)))


def validate(references: torch.Tensor, estimates: torch.Tensor, silence: bool = True) -> None:
    """museval's input checks: equal shapes [sources, time, channels], no source all zeros (if
    ``silence``)."""
    if references.shape != estimates.shape:
        raise ValueError(f"references {tuple(references.shape)} and estimates "
                         f"{tuple(estimates.shape)} must have the same [sources, time, channels]")
    if references.ndim != 3:
        raise ValueError(f"expected [sources, time, channels], got {references.ndim} dimensions")
    if silence:
        for name, signals in (("reference", references), ("estimated", estimates)):
            _refuse_silent(name, silent_sources(signals))


def _refuse_silent(name: str, silent: torch.Tensor) -> None:
    if bool(silent.any()):
        index = int(silent.nonzero()[0, 0])
        raise ValueError(f"{name} source {index} is all zeros; BSSEval cannot score it")


def silent_sources(signals: torch.Tensor) -> torch.Tensor:
    """Which of the signals [sources, time, channels] museval calls silent: the sum over the
    channels is 0 at every sample. [sources] bool."""
    return (channel_sum(signals) == 0).all(dim=1)


def channel_sum(signals: torch.Tensor) -> torch.Tensor:
    """The sum over the last axis (channels), [..., channels] -> [...], as a product with ones:
    many times faster than ``sum`` over a short innermost axis, and as exact for two channels."""
    return signals @ torch.ones(signals.shape[-1], dtype=signals.dtype, device=signals.device)


def bss_eval_v4(references: torch.Tensor, estimates: torch.Tensor, window: int, hop: int,
                filters_len: int = 512) -> tuple[torch.Tensor, Conditioning]:
    """Framewise BSSEval v4 image metrics, museval's ``bss_eval`` with exactly solved filters.

    Args:
        references: true source images [sources, time, channels], float64, none silent.
        estimates: estimated source images [sources, time, channels], same shape; estimate ``j``
            is scored against reference ``j`` (no permutation search).
        window, hop: frame length and hop in samples; a window of at least the signal's length
            gives one frame over the whole signal.
        filters_len: number of taps ``L`` of the distortion filters.

    Returns:
        [4, sources, frames] float64: SDR, ISR, SIR, SAR in dB (museval's order); NaN for frames
        where a reference or an estimate is silent, +inf where a distortion energy is exactly 0;
        and the scores' :class:`Conditioning`.
    """
    n_sources, length, n_channels = references.shape
    k = n_sources * n_channels
    if window >= length:
        window, hop = length, length  # museval: one frame over the whole signal
    n_frames = (length - window) // hop + 1  # museval's Framing
    with cpu_threads(references.device):
        plan = BlockPlan.for_segment(window, filters_len)
        track, frame_corr, gram = correlate([references, estimates], plan, hop, n_frames, k)
        estimate_energy, error_energy, silent = frame_statistics(gram, window, hop, n_sources, n_channels,
                                                                 references, estimates)
        data = FrameData(refs=frame_corr[:, :k], cross=frame_corr[:, k:],
                         estimate_energy=estimate_energy, error_energy=error_energy, n_sources=n_sources)
        systems = normal_equations(track, gram, n_sources, n_channels)
        solved = solve_systems(systems, data, n_sources, n_channels)
        exact, sensitivity = solved.criteria, solved.sensitivity
        mask = silent[None, None]  # [1, 1, T]
        scores = exact.scores.masked_fill(mask, float("nan"))
        sensitivity = sensitivity.masked_fill(mask, float("nan"))
        unresolved = exact.unresolved & ~mask
        regularized = (solved.joint_ridge > 0).expand(n_sources)
        own_regularized = solved.own_ridge > 0
        ill = ((sensitivity > SENSITIVITY_DB) | exact.unresolved).any(dim=0) & ~silent[None]
        conditioning = Conditioning(
            sensitivity=sensitivity.cpu().numpy(), unresolved=unresolved.cpu().numpy(),
            ill_conditioned=ill.cpu().numpy(),
            condition=systems.joint.condition.expand(n_sources).cpu().numpy(),
            own_condition=systems.own.condition.cpu().numpy(),
            regularized=regularized.cpu().numpy(), own_regularized=own_regularized.cpu().numpy(),
            ridge=(solved.joint_ridge.expand(n_sources)).cpu().numpy(), own_ridge=solved.own_ridge.cpu().numpy())
    return scores, conditioning


def correlate(sources: list[torch.Tensor], plan: BlockPlan, hop: int, n_frames: int,
              n_refs: int) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The correlations BSSEval needs, of each frame (float64 FFTs) and of the whole track (beyond
    float64, :class:`~.correlations.TrackSpectrum`).

    ``out[p, q, k] = Σ_n x_p[n + k] · x_q[n]`` with ``q`` a reference channel; for a frame, over
    its samples only (museval filters each frame alone).

    Args:
        sources: references and estimates [S, time, C], K = S·C channels each.
        plan: the frames' block plan; hop: their spacing; n_frames: how many.
        n_refs: K.

    Returns:
        ``track`` [2K, K, L] as a double-double ``(hi, lo)``,
        ``frames`` [T, 2K, K, L] and the frames' lag-zero products of all channels [T, 2K, 2K].
    """
    length = sources[0].shape[1]
    if not _tiled(length, plan, hop, n_frames):  # overlapping frames: the track's computed apart
        frame_corr, gram = frame_correlations(sources, 0, hop, n_frames, plan, n_refs)
        return track_correlations(sources, n_refs, plan.lags), frame_corr, gram
    # frames tile the track: its spectrum is the frames', and its correlations those plus the
    # samples after the last frame and the products that cross the boundaries between them
    track = TrackSpectrum(plan.n_fft, 2 * n_refs, n_refs, sources[0])
    frame_corr, gram = frame_correlations(sources, 0, hop, n_frames, plan, n_refs, track)
    return track_total(track, sources, n_refs, plan.lags, plan.length, n_frames), frame_corr, gram


def _tiled(length: int, plan: BlockPlan, hop: int, n_frames: int) -> bool:
    """Whether the frames tile the track (one frame over all of it, or frames one after the
    other, each at least ``L − 1`` long): its correlations are then the frames' and a few more."""
    return n_frames == 1 and plan.length == length or hop == plan.length >= plan.lags - 1


def frame_statistics(gram: torch.Tensor, window: int, hop: int, n_sources: int, n_channels: int,
                     references: torch.Tensor, estimates: torch.Tensor):
    """Per frame: ``‖ŝ_j‖²`` and ``‖ŝ_j − s_j‖²`` [T, S], and museval's NaN frames [T] bool (some
    reference or estimate has a channel sum that is 0 throughout the frame); raises museval's
    ValueError for a source silent throughout.

    All from the frames' products at lag 0, ``gram`` [T, 2K, 2K] (references' channels, then
    the estimates'). Where that leaves the energy of a difference (the error, a channel sum) to
    rounding, it is summed directly instead.
    """
    k = n_sources * n_channels
    n_frames = gram.shape[0]

    def frame(signals, t, j):  # [window, C]: source j's frame t
        return signals[j, t * hop:t * hop + window]

    def per_source(block):  # [T, K, K] -> [T, S, C, C]: source j's channels
        return block.reshape(n_frames, n_sources, n_channels, n_sources, n_channels).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)

    ref_block, est_block = per_source(gram[:, :k, :k]), per_source(gram[:, k:, k:])
    cross_block = per_source(gram[:, k:, :k])
    ref_energy = ref_block.diagonal(dim1=-2, dim2=-1).sum(-1)  # [T, S]
    estimate_energy = est_block.diagonal(dim1=-2, dim2=-1).sum(-1)
    error_energy = estimate_energy - 2 * cross_block.diagonal(dim1=-2, dim2=-1).sum(-1) + ref_energy
    # the expansion loses digits when the error is small (SDR above ~60 dB): sum those directly
    direct = error_energy < 1e-6 * (estimate_energy + ref_energy)
    for t, j in direct.nonzero().tolist():
        error_energy[t, j] = (frame(estimates, t, j) - frame(references, t, j)).square().sum()

    silent = torch.zeros(n_frames, dtype=torch.bool, device=gram.device)
    for block, energy, name, signals in ((ref_block, ref_energy, "reference", references),
                                         (est_block, estimate_energy, "estimated", estimates)):
        channel_sum_energy = block.sum(dim=(-2, -1))
        # 0 exactly where the channel sum is 0; rounding where it cancels (e.g. left = −right)
        candidates = channel_sum_energy <= 1e-12 * energy
        frame_silent = torch.zeros_like(candidates)
        for t, j in candidates.nonzero().tolist():
            frame_silent[t, j] = bool((frame(signals, t, j).sum(dim=-1) == 0).all())
        silent |= frame_silent.any(dim=1)
        throughout = frame_silent.all(dim=0)  # then check the whole signal, frames may not cover it
        if bool(throughout.any()):
            _refuse_silent(name, silent_sources(signals) & throughout)
    return estimate_energy, error_energy, silent


@dataclass
class NormalEquations:
    """The least-squares systems of the distortion filters: ``joint`` [1, L, K, K] (every estimate
    channel on all references) and ``own`` [S, L, C, C] (each estimate on its own reference)."""

    joint: NormalSystem
    own: NormalSystem


def gram_blocks(track: torch.Tensor, n_refs: int) -> torch.Tensor:
    """``G``'s blocks [L, K, K] from the track correlations [2K, K, L]: ``blocks[m][p, q]`` the
    correlation of reference channel p delayed by a with q delayed by a + m.

    A reference channel that is all zeros has a zero row and column in ``G``: its filters are 0
    (museval's solve gives ``0 / eps``), so its diagonal is set to a typical one, which leaves the
    solution the same and the system as well conditioned as the other channels make it.
    """
    blocks = track[:n_refs].permute(2, 0, 1).clone()
    diagonal = blocks[0].diagonal()
    silent = diagonal == 0
    if bool(silent.any()):
        diagonal[silent] = diagonal[~silent].mean()
    return blocks


def normal_equations(track: tuple[torch.Tensor, torch.Tensor], gram: torch.Tensor, n_sources: int,
                     n_channels: int) -> NormalEquations:
    """museval's ``(G + eps I) C = D`` (:func:`gram_blocks`) from the track correlations
    [2K, K, L], a double-double ``(hi, lo)``, kept as one to the exact solve.

    The frames' lag-zero products ``gram`` [T, 2K, 2K] give the estimates' energies, the scale of
    ``D``'s rounding.
    """
    k = n_sources * n_channels
    track, track_lo = track
    lags = track.shape[-1]
    blocks, blocks_lo = gram_blocks(track, k), track_lo[:k].permute(2, 0, 1).clone()
    rhs, rhs_lo = track[k:].permute(2, 1, 0), track_lo[k:].permute(2, 1, 0)  # [L, refs, ests]: <ref delayed by lag, est>
    diagonal, diagonal_lo = blocks[0].diagonal(), blocks_lo[0].diagonal()
    plus_eps, rounding = two_sum(diagonal, torch.full_like(diagonal, _EPS))
    diagonal.copy_(plus_eps)
    diagonal_lo += rounding
    estimate_norm = gram[:, k:, k:].diagonal(dim1=-2, dim2=-1).sum(0).sqrt()  # [K]
    rhs_scale = diagonal.clamp_min(0).sqrt()[:, None] * estimate_norm[None, :]  # [K refs, K ests]
    by_source = (lags, n_sources, n_channels, n_sources, n_channels)

    def own(tensor):  # [L, refs, refs] -> [S, L, C, C]: source j's rows and columns
        return tensor.reshape(by_source).diagonal(dim1=1, dim2=3).permute(3, 0, 1, 2).contiguous()

    own_scale = rhs_scale.reshape(n_sources, n_channels, n_sources, n_channels).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    joint_data = (blocks[None], rhs[None], rhs_scale[None], blocks_lo[None], rhs_lo[None])
    own_data = (own(blocks), own(rhs), own_scale.contiguous(), own(blocks_lo), own(rhs_lo))
    if lags * k <= DENSE_SIZE:  # LAPACK factors both, faster with all threads than side by side
        return NormalEquations(_system(*joint_data), _system(*own_data))
    # the block Schur recursion's loop is bound by Python and small products, which release the
    # GIL: the own systems are factored on a second thread meanwhile
    with with_helper_thread() as helper, ThreadPoolExecutor(max_workers=1) as pool:
        own_system = pool.submit(helper(_system), *own_data)
        return NormalEquations(_system(*joint_data), own_system.result())


def _system(blocks: torch.Tensor, rhs: torch.Tensor, rhs_scale: torch.Tensor, blocks_lo: torch.Tensor,
            rhs_lo: torch.Tensor) -> NormalSystem:
    """A :class:`~.toeplitz.NormalSystem` with its spectral condition number (``condition``).

    A system whose spectral dynamic range exceeds float64's is not determined by the data below
    that range: its exact solution follows the correlations' rounding (and moves by ~0.01 dB under
    a rescaling of the data); a ridge at that level leaves the rest as it is.
    """
    condition = spectral_condition(blocks)
    ridge = torch.where(condition >= _UNRESOLVED_CONDITION, _FLOAT64_RIDGE, 0.0).to(blocks)
    system = NormalSystem(blocks, rhs, rhs_scale, ridge, blocks_lo, rhs_lo)
    system.condition = condition
    return system


@dataclass
class Solved:
    """The filters' solutions, their criteria and the criteria's sensitivity [4, S, T] to a
    rounding-level change of the correlations, and the ridges (relative) that gave them."""

    joint: torch.Tensor
    own: torch.Tensor
    criteria: Criteria
    sensitivity: torch.Tensor
    joint_ridge: torch.Tensor  # [1]
    own_ridge: torch.Tensor  # [S]


def solve_systems(systems: NormalEquations, data: FrameData, n_sources: int, n_channels: int) -> Solved:
    """Solve the filters' systems exactly (:meth:`~.toeplitz.NormalSystem.solve`), and measure how
    far a rounding-level change of their correlations moves the scores
    (:meth:`~.toeplitz.NormalSystem.perturbation`).

    One system after the other, each on all threads: its triangular solves, which read the whole
    factor for a few right-hand sides, are bound by memory and gain from both cores, and on the
    benchmark's cases this is 0-15 % faster than the own systems on a second thread meanwhile.
    """
    x_joint, d_joint, joint_ridge = _solve_and_perturb(systems.joint)
    x_own, d_own, own_ridge = _solve_and_perturb(systems.own)
    exact, sensitivity = _criteria_and_sensitivity(data, x_joint, d_joint, x_own, d_own, n_sources, n_channels)
    return Solved(x_joint, x_own, exact, sensitivity, joint_ridge, own_ridge)


def _criteria_and_sensitivity(data: FrameData, x_joint, d_joint, x_own, d_own, n_sources: int, n_channels: int):
    """The criteria of the filters ``x`` and how far they move [4, S, T] with the filters ``x + d``."""
    exact = criteria(data, _joint_filters(x_joint, n_sources, n_channels), x_own.permute(0, 2, 1, 3), n_sources)
    moved = criteria(data, _joint_filters(x_joint + d_joint, n_sources, n_channels),
                     (x_own + d_own).permute(0, 2, 1, 3), n_sources)
    sensitivity = (moved.scores - exact.scores).abs()
    same = (moved.scores == exact.scores) | (torch.isnan(moved.scores) & torch.isnan(exact.scores))
    sensitivity = torch.where(same, 0.0, torch.nan_to_num(sensitivity, nan=torch.inf))
    sensitivity[0] = 0  # SDR needs no filters
    return exact, sensitivity


def _solve_and_perturb(system: NormalSystem):
    x, ridge = system.solve_determined()
    return x, system.perturbation(x, ridge), ridge


#: a spectral condition number at the float64 cap (1/eps) counts as beyond float64 resolution
_UNRESOLVED_CONDITION = 0.5 / torch.finfo(torch.float64).eps
#: the ridge of such a system, relative to its mean eigenvalue: on the bundled track's four
#: MP3-coded stems (4 s), 1e-13 keeps the scores within museval's spread (museval's own solve is
#: regularised by its rounding, at about that level), 2e-13 already leaves it by 0.2 dB, 1e-12 by
#: 3.5 dB; on the 16-bit stems, whose bass is empty at the top too, 1e-13 moves no score by more
#: than 7e-5 dB
_FLOAT64_RIDGE = 1e-13


def _joint_filters(solution: torch.Tensor, n_sources: int, n_channels: int) -> torch.Tensor:
    """[1, L, K, K] (delay, reference channel; estimate channel) -> [S, K, L, C]."""
    lags, k = solution.shape[1], solution.shape[2]
    return solution[0].reshape(lags, k, n_sources, n_channels).permute(2, 1, 0, 3)


def spectral_condition(blocks: torch.Tensor) -> torch.Tensor:
    """A lower bound on the condition number of each block-Toeplitz ``T``, [batch].

    The Rayleigh quotients of ``T`` on tapered Fourier vectors ``w ⊙ e^{iωa} v / ‖w‖`` are the
    eigenvalues of the spectral density ``S(ω) = Σ_{|k|<L} ρ_w(k) R(k) e^{iωk} / ‖w‖²`` (``ρ_w``
    the taper's autocorrelation), so ``max_ω λ_max(S) / min_ω λ_min(S) <= cond(T)``: the dynamic
    range of the references' multichannel spectrum as 512-tap filters see it. A Blackman-Harris
    taper leaks ~1e-18 of the power, so the empty band of MP3-coded stems shows (1e15 and more);
    16-bit stems stop near 1e10 (their quantisation noise is white). Capped at 1/eps, where float64
    ends.
    """
    from scipy.signal.windows import blackmanharris

    from .toeplitz import toeplitz_kernel

    batch, lags, k, _ = blocks.shape
    taper = torch.from_numpy(blackmanharris(lags, sym=False)).to(blocks)
    autocorrelation = torch.fft.irfft(torch.fft.rfft(taper, n=2 * lags).abs().square(), n=2 * lags)[:lags]
    autocorrelation = autocorrelation / autocorrelation[0]
    weights = torch.cat([autocorrelation.flip(0), autocorrelation[1:]])  # lags L−1 … 0 … −(L−1)
    kernel = toeplitz_kernel(blocks) * weights[None, :, None, None]
    n_fft = 4 * lags
    spectrum = torch.fft.fft(kernel.to(torch.complex128), n=n_fft, dim=1)
    # kernel index i is lag L−1−i: undo the shift, leaving S at −ω (Hermitian, same eigenvalues)
    phase = torch.exp(2j * torch.pi * torch.arange(n_fft, device=blocks.device) * (lags - 1) / n_fft)
    spectrum = spectrum * phase[None, :, None, None]
    eigenvalues = torch.linalg.eigvalsh(spectrum)  # [batch, F, K]
    largest = eigenvalues[..., -1].amax(dim=1)
    smallest = eigenvalues[..., 0].amin(dim=1)
    floor = largest * torch.finfo(blocks.dtype).eps
    return largest / torch.maximum(smallest, floor)
