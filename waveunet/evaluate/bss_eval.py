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

museval computes every correlation with a full-length FFT per pair of channels and loops over
sources and frames in Python; here the correlations are accumulated block by block in the frequency
domain for all channel pairs at once; the least-squares systems, block Toeplitz, are solved by a
block Levinson recursion refined by preconditioned conjugate gradients (:mod:`.toeplitz`) instead
of one dense LU per source; and the frames are filtered as one batch. All arithmetic is float64, as
museval's, on any torch device; the scores agree with museval's to about 1e-5 dB.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .threads import cpu_threads
from .toeplitz import solve_block_toeplitz

#: museval's ``np.finfo(float).eps``, added to the diagonal of every Gram matrix before solving
_EPS = torch.finfo(torch.float64).eps

#: bytes of intermediate tensors one batch of blocks or frames may use
_MEMORY_BUDGET = 256 * 2**20

BACKENDS = ("fast", "museval")


class BSSEvalScores(NamedTuple):
    """Framewise scores in dB, each [sources, frames], in the order museval returns them."""

    sdr: np.ndarray | torch.Tensor
    isr: np.ndarray | torch.Tensor
    sir: np.ndarray | torch.Tensor
    sar: np.ndarray | torch.Tensor


def bss_eval(references, estimates, window: int = 44100, hop: int = 44100, backend: str = "fast",
             device: str | torch.device | None = None) -> BSSEvalScores:
    """BSSEval v4 image metrics per source and frame, as ``museval.evaluate``.

    Estimates longer or shorter than the references are truncated or zero-padded at the end, as
    museval does, with a warning. On the CPU, evaluations running at once share torch's threads,
    and the Levinson recursion runs on one (see :func:`~waveunet.evaluate.threads.cpu_threads`).

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
    as_tensor = isinstance(references, torch.Tensor)
    if device is None:
        device = references.device if as_tensor else "cpu"
    references = _as_float64(references, device)
    estimates = pad_or_truncate(_as_float64(estimates, device), references.shape[1])
    validate(references, estimates)

    if backend == "fast":
        scores = bss_eval_v4(references, estimates, int(window), int(hop))
    elif backend == "museval":
        import museval

        scores = museval.evaluate(references.cpu().numpy(), estimates.cpu().numpy(),
                                  win=int(window), hop=int(hop))
        scores = torch.from_numpy(np.stack(scores)).to(device)
    else:
        raise ValueError(f"unknown BSSEval backend {backend!r}; expected one of {BACKENDS}")
    if not as_tensor:
        scores = scores.cpu().numpy()
    return BSSEvalScores(*scores)


def _as_float64(signals, device) -> torch.Tensor:
    """[sources, time, channels] float64 tensor; [sources, time] gains a channel axis (museval's
    ``np.atleast_3d``)."""
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


def validate(references: torch.Tensor, estimates: torch.Tensor) -> None:
    """museval's input checks: equal shapes [sources, time, channels], no source all zeros."""
    if references.shape != estimates.shape:
        raise ValueError(f"references {tuple(references.shape)} and estimates "
                         f"{tuple(estimates.shape)} must have the same [sources, time, channels]")
    if references.ndim != 3:
        raise ValueError(f"expected [sources, time, channels], got {references.ndim} dimensions")
    for name, signals in (("reference", references), ("estimated", estimates)):
        silent = silent_sources(signals)
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
                filters_len: int = 512) -> torch.Tensor:
    """Framewise BSSEval v4 image metrics, numerically equivalent to museval's ``bss_eval``.

    Args:
        references: true source images [sources, time, channels], float64, none silent.
        estimates: estimated source images [sources, time, channels], same shape; estimate ``j``
            is scored against reference ``j`` (no permutation search).
        window, hop: frame length and hop in samples; a window of at least the signal's length
            gives one frame over the whole signal.
        filters_len: number of taps ``L`` of the distortion filters.

    Returns:
        [4, sources, frames] float64: SDR, ISR, SIR, SAR in dB (museval's order); NaN for frames
        where a reference or an estimate is silent, +inf where a distortion energy is exactly 0.
    """
    references = references.permute(0, 2, 1)  # [sources, channels, time]
    estimates = estimates.permute(0, 2, 1)
    with cpu_threads(references.device):
        filters, own_filters = distortion_filters(references, estimates, filters_len)
        return framewise_metrics(references, estimates, filters, own_filters, window, hop)


def distortion_filters(references: torch.Tensor, estimates: torch.Tensor,
                       filters_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares distortion filters over the whole signals.

    The normal equations are museval's, ``(G + eps·I) c = D``: ``G`` the Gram matrix of the delayed
    reference channels, ``D`` their correlations with the estimate's channels. ``G`` is block
    Toeplitz in the delay; all estimates' channels are right-hand sides of one system. The
    projections onto each source's own image solve its diagonal block, one batch of small systems.

    Args:
        references, estimates: [sources, channels, time].

    Returns:
        ``filters`` [sources_est, sources_ref, channels_in, L, channels_out], projecting each
        estimate onto all references, and ``own_filters`` [sources, channels_in, L, channels_out],
        projecting estimate ``j`` onto reference ``j`` alone.
    """
    n_sources, n_channels, _ = references.shape
    n_refs = n_sources * n_channels
    signals = torch.cat([references, estimates]).reshape(2 * n_refs, -1)  # references first
    correlations = lagged_correlations(signals, n_refs, filters_len)
    # blocks[k][p, q] = <ref p delayed by a, ref q delayed by a + k>
    blocks = correlations[:n_refs].permute(2, 0, 1).clone()  # [L, refs, refs]
    blocks[0] += _EPS * torch.eye(n_refs, dtype=blocks.dtype, device=blocks.device)
    cross = correlations[n_refs:].permute(2, 1, 0)  # [L, refs, ests]: <ref delayed by lag, est>

    by_source = (filters_len, n_sources, n_channels, n_sources, n_channels)

    def own(tensor):  # [L, refs, refs] -> [S, L, C, C]: source j's rows and columns
        return tensor.reshape(by_source).diagonal(dim1=1, dim2=3).permute(3, 0, 1, 2)

    # one small system per source, solved on a second thread: the Levinson recursion of the large
    # system is bound by one core (small products) and by Python, which releases the GIL in them
    with ThreadPoolExecutor(max_workers=1) as pool:
        own_filters = pool.submit(solve_block_toeplitz, own(blocks), own(cross))
        filters = solve_block_toeplitz(blocks[None], cross[None])[0]
        own_filters = own_filters.result()
    filters = filters.reshape(by_source).permute(3, 1, 2, 0, 4)
    return filters, own_filters.permute(0, 2, 1, 3)


def lagged_correlations(x: torch.Tensor, n_y: int, lags: int) -> torch.Tensor:
    """Cross-correlations at non-negative lags of all signals with the first ``n_y`` of them,
    ``out[p, q, k] = Σ_n x[p, n + k] · x[q, n]``.

    ``x[q]`` is cut into blocks of ``B`` samples; block ``b`` is correlated with the
    ``N = B + lags − 1`` samples of ``x[p]`` from its start, by FFTs of ``N`` points (no
    wrap-around at the lags wanted; ``N`` a power of two and ``B`` as long as that allows, so that
    little of each transform is padding or overlap). The products of all blocks are summed before
    the one inverse FFT per pair.

    Args:
        x: [P, time].

    Returns:
        [P, n_y, lags].
    """
    n_x, length = x.shape
    n_fft = max(8192, 1 << (2 * lags - 1).bit_length())
    block = n_fft - lags + 1
    n_blocks = -(-length // block)
    padded = F.pad(x, (0, (n_blocks - 1) * block + n_fft - length))
    segments = padded.unfold(-1, n_fft, block)  # [P, blocks, N]
    blocks = padded[:n_y, :n_blocks * block].unflatten(-1, (n_blocks, block))  # [Q, blocks, B]

    step = max(1, _MEMORY_BUDGET // (3 * (n_x + n_y) * (n_fft // 2 + 1) * 16))
    spectrum = torch.zeros(n_fft // 2 + 1, n_x, n_y, dtype=torch.complex128, device=x.device)
    for start in range(0, n_blocks, step):
        x_spec = torch.fft.rfft(segments[:, start:start + step], n=n_fft)  # [P, blocks, F]
        y_spec = torch.fft.rfft(blocks[:, start:start + step], n=n_fft)  # [Q, blocks, F]
        # sum over blocks as one product per frequency, operands laid out for it (einsum: 2x slower)
        spectrum += x_spec.permute(2, 0, 1).contiguous() @ y_spec.permute(2, 1, 0).conj().contiguous()
    return torch.fft.irfft(spectrum, n=n_fft, dim=0)[:lags].permute(1, 2, 0)


def framewise_metrics(references: torch.Tensor, estimates: torch.Tensor, filters: torch.Tensor,
                      own_filters: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """SDR, ISR, SIR, SAR of every frame, the filters fixed.

    Args:
        references, estimates: [sources, channels, time].
        filters: [sources_est, sources_ref, channels_in, L, channels_out].
        own_filters: [sources, channels_in, L, channels_out].

    Returns:
        [4, sources, frames].
    """
    n_sources, n_channels, length = references.shape
    filters_len = own_filters.shape[-2]
    if window >= length:
        window, hop = length, length  # museval: one frame over the whole signal
    ref_frames = references.unfold(-1, window, hop).permute(2, 0, 1, 3)  # [frames, S, C, W]
    est_frames = estimates.unfold(-1, window, hop).permute(2, 0, 1, 3)
    n_frames = ref_frames.shape[0]

    n_fft = _fft_length(window + filters_len - 1)
    # spectra of the filters: all references -> each estimate's channels; own reference only
    all_spec = torch.fft.rfft(filters.permute(0, 4, 1, 2, 3), n=n_fft)  # [S_est, C_out, S, C_in, F]
    own_spec = torch.fft.rfft(own_filters.permute(0, 3, 1, 2), n=n_fft)  # [S, C_out, C_in, F]

    bytes_per_frame = 6 * n_sources * n_channels * n_fft * 16
    step = max(1, _MEMORY_BUDGET // bytes_per_frame)
    metrics = []
    for start in range(0, n_frames, step):
        refs = ref_frames[start:start + step]
        ests = est_frames[start:start + step]
        ref_spec = torch.fft.rfft(refs, n=n_fft)  # [frames, S, C_in, F]
        projected = torch.einsum("tsif,josif->tjof", ref_spec, all_spec)
        own_projected = torch.einsum("tjif,joif->tjof", ref_spec, own_spec)
        tail = window + filters_len - 1
        projected = torch.fft.irfft(projected, n=n_fft)[..., :tail]
        own_projected = torch.fft.irfft(own_projected, n=n_fft)[..., :tail]
        metrics.append(_image_criteria(refs, ests, own_projected, projected))
    metrics = torch.cat(metrics, dim=-1)

    silent = _silent_in_frames(references, window, hop) | _silent_in_frames(estimates, window, hop)
    return metrics.masked_fill(silent, float("nan"))


def _image_criteria(refs: torch.Tensor, ests: torch.Tensor, own_projected: torch.Tensor,
                    projected: torch.Tensor) -> torch.Tensor:
    """museval's ``_bss_crit`` for ``bsseval_sources_version=False``.

    Args:
        refs, ests: frames [frames, S, C, W]; own_projected (``P_j ŝ_j``) and projected
            (``P ŝ_j``): [frames, S, C, W + L − 1].

    Returns:
        [4, S, frames]: SDR, ISR, SIR, SAR.
    """
    tail = projected.shape[-1] - refs.shape[-1]
    s_true = F.pad(refs, (0, tail))
    estimate = F.pad(ests, (0, tail))

    def energy(signal):
        return signal.square().sum(dim=(-2, -1)).T  # [S, frames]

    s_energy = energy(s_true)
    sdr = _safe_db(s_energy, energy(estimate - s_true))
    isr = _safe_db(s_energy, energy(own_projected - s_true))
    sir = _safe_db(energy(own_projected), energy(projected - own_projected))
    sar = _safe_db(energy(projected), energy(estimate - projected))
    return torch.stack([sdr, isr, sir, sar])


def _safe_db(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``10 log10(num / den)``, +inf where ``den == 0`` (museval's ``_safe_db``)."""
    ratio = 10 * torch.log10(numerator / denominator)
    return torch.where(denominator == 0, torch.inf, ratio)


def _silent_in_frames(signals: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """museval's ``_any_source_silent`` per frame: some source's channel sum is 0 throughout.

    Args:
        signals: [sources, channels, time].

    Returns:
        [frames] bool.
    """
    frames = channel_sum(signals.transpose(1, 2)).unfold(-1, window, hop)  # [S, frames, W]
    return (frames == 0).all(dim=-1).any(dim=0)


def _fft_length(n: int) -> int:
    """The smallest 5-smooth integer ``>= n``: FFT lengths torch transforms fastest."""
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
