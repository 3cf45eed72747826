"""Applying a Wave-U-Net to a whole song: which windows, and the streaming engine.

The mixture is brought to the model's rate (torchaudio's sinc resampling) and channel count, cut into
windows by :func:`waveunet.tiling.tiled_forward`, and the estimates are brought back to the input's
rate and length. Everything streams: the song goes through in blocks of a few seconds (resampled
block-wise, exactly as a whole-song resampling would, see :class:`waveunet.audio.StreamResampler`),
so memory does not grow with the song's length. :func:`separate` is the in-memory entry point;
:mod:`.files` reads and writes files around :func:`separate_stream`.

Which windows (see :func:`inference_tiling`):

* valid-convolution, translation-equivariant networks (the paper's M3..M7): long abutting windows on
  the song's down-sampling grid. The result equals one forward pass over the whole (zero-padded)
  song; long windows waste little on context, so this is also the fast choice.
* networks whose output depends on the window's borders (GroupNorm over the window, or the PyTorch
  Wave-U-Net's reflect-padded low-pass filters): the training window on the reference's grid (the
  song zero-padded by the context, windows one output length apart), batched.
* same-padding networks (M1, M2): training-size windows overlapping by half, blended with a fade;
  an approximation of a whole-song pass.

Which stems (see :func:`stem_plan`): the model's sources, brought back to the input's rate. A
difference-output model's last source is by default formed there, ``input - sum(others)``: a model
running below the input's rate (M1..M7: 22.05 or 8.192 kHz) knows nothing above its Nyquist
frequency, and this way the band it cannot see goes to the difference source (``vocals`` for the
presets, whose sources are ``accompaniment, vocals``) instead of being lost, so the stems sum to
the input exactly. ``two_stems`` gives one source and ``no_<source> = input - source``, also at
the input's rate.

Shifts (test-time augmentation, see :func:`shift_offsets`): a valid-convolution Wave-U-Net decimates,
so its output depends on where the song falls on its down-sampling grid (a period of
``model.length_step`` samples). ``shifts=N`` averages N separations on N evenly spaced grid offsets,
at N times the work; ``shifts=1`` is the plain separation.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from ..audio import StreamResampler, match_channels
from ..device import resolve_device
from ..errors import WaveUNetError
from ..resolve import check_kind
from ..tiling import Tiling, exact_tiling, faded_tiling, tiled_forward

#: output seconds per window for translation-equivariant models (see benchmarks/separate.py)
WINDOW_SECONDS = 8.0
#: windows per forward pass on the CPU, where batching only thrashes the caches (see benchmarks/separate.py)
BATCH_SIZE = 1
#: and on a GPU, which needs many windows at once to be busy
CUDA_BATCH_SIZE = 16
#: seconds of audio read, resampled and written at a time
BLOCK_SECONDS = 10.0
#: where a difference-output model's last source is formed: from the input at its rate, or the model's own output
DIFFERENCE_MODES = ("input", "model")
#: by default the stems sum to the input (issue 11); "model" is what separation gave before
DEFAULT_DIFFERENCE = "input"


def translation_equivariant(config) -> bool:
    """Whether shifting the input by the down-sampling step shifts the output alike, in valid mode.

    GroupNorm normalises over the window and the PyTorch Wave-U-Net's low-pass filters reflect-pad
    at its borders: with either, a window's output depends on where the window lies.
    """
    return config.padding == "valid" and config.norm != "group" and "sinc" not in (config.downsample, config.upsample)


def inference_tiling(model: nn.Module, window: int | None = None, length: int | None = None) -> Tiling:
    """The windows :func:`separate` runs ``model`` on.

    ``window``: output samples per window (translation-equivariant models only); with the song's
    length at the model's rate (``length``), windows are shrunk to cover it evenly, so that a short
    song is not padded to a long window and the last window is not mostly padding.
    """
    c = model.config
    if c.padding == "same":
        return faded_tiling(model, c.output_length, overlap=0.5)
    if not translation_equivariant(c):
        # the output depends on where windows lie: keep the windows the model was trained on, on the
        # reference implementation's grid
        return Tiling((model.input_length,), (model.output_length,), (model.output_length,))
    window = window or round(WINDOW_SECONDS * c.sample_rate)
    if length:  # as many windows as that takes, shrunk to share the song evenly (the last one then wastes little)
        window = math.ceil(length / math.ceil(length / window))
    return exact_tiling(model, window)


@dataclass(frozen=True)
class StemPlan:
    """How the stems are made from the model's estimates, once these are back at the input's rate.

    Attributes:
        names: the stems, in the order :func:`separate_stream` yields them.
        resampled: indices of the model's sources that are brought back to the input's rate.
        residual: append ``mixture - sum(resampled)`` (the difference source, formed at the input's rate).
        pair: two stems: the index (among the resampled sources, and the residual if any) of the one
            source to keep; it is followed by ``mixture - source``.
    """

    names: tuple[str, ...]
    resampled: tuple[int, ...]
    residual: bool = False
    pair: int | None = None

    @property
    def needs_mixture(self) -> bool:
        """Whether a stem is formed from the input mixture."""
        return self.residual or self.pair is not None

    def assemble(self, estimates: torch.Tensor, mixture: torch.Tensor | None) -> torch.Tensor:
        """``[len(resampled), C, n]`` estimates and the ``[C, n]`` mixture (input rate) -> ``[stems, C, n]``.

        The model's estimates are clipped to [-1, 1] (the paper clips them at inference; resampling
        can ring past the model's own clipping), and so is the one source of a pair, before the
        stems formed from the mixture are: the stems then sum to the input exactly. Only a formed
        stem (the difference source, ``no_<source>``) can still exceed [-1, 1]; writing clips it.
        """
        estimates = estimates.clamp(-1.0, 1.0)
        if self.residual:
            estimates = torch.cat([estimates, (mixture - estimates.sum(0))[None]])
        if self.pair is not None:
            source = estimates[self.pair].clamp(-1.0, 1.0)  # it may be the residual
            estimates = torch.stack([source, mixture - source])
        return estimates


def stem_plan(config, *, two_stems: str | None = None, difference: str = DEFAULT_DIFFERENCE) -> StemPlan:
    """The stems of a model of ``config`` and how to make them (see :class:`StemPlan`).

    Args:
        two_stems: a source name: yield it and ``no_<source>`` (the input minus it), nothing else.
        difference: ``input``: a difference-output model's last source is the input minus the
            others, at the input's rate (the stems sum to the input exactly); ``model``: the model's
            own difference output, resampled (the stems then sum to the input only below the model's
            Nyquist frequency when it runs at a lower rate). No effect on direct-output models.
    """
    if difference not in DIFFERENCE_MODES:
        raise WaveUNetError(f"difference {difference!r}: choose {' or '.join(DIFFERENCE_MODES)}")
    sources = tuple(config.sources)
    if two_stems is not None and two_stems not in sources:
        raise WaveUNetError(f"two stems {two_stems!r}: not one of the model's sources ({', '.join(sources)})")
    residual = config.output == "difference" and difference == "input"
    if two_stems is None:
        return StemPlan(sources, tuple(range(len(sources) - residual)), residual)
    names = (two_stems, f"no_{two_stems}")
    wanted = sources.index(two_stems)
    if residual and wanted == len(sources) - 1:  # the difference source itself: the others make it
        return StemPlan(names, tuple(range(len(sources) - 1)), True, wanted)
    return StemPlan(names, (wanted,), False, 0)


def stem_names(config, *, two_stems: str | None = None, difference: str = DEFAULT_DIFFERENCE) -> tuple[str, ...]:
    """The stems :func:`separate_stream` yields for a model of ``config``, in order (see :func:`stem_plan`).

    Takes the options of :func:`separate_stream` that decide the stems (``shifts`` does not).
    """
    return stem_plan(config, two_stems=two_stems, difference=difference).names


def shift_offsets(length_step: int, shifts: int) -> tuple[int, ...]:
    """``shifts`` evenly spaced offsets within one period of the down-sampling grid, ``length_step`` samples.

    >>> shift_offsets(4096, 1), shift_offsets(4096, 4), shift_offsets(64, 3)
    ((0,), (0, 1024, 2048, 3072), (0, 21, 42))

    Shifting by a whole period changes nothing for a valid-convolution model (beyond the song's
    ends), so more than ``length_step`` shifts cannot differ.
    """
    if not 1 <= shifts <= length_step:
        raise WaveUNetError(f"shifts {shifts}: choose 1 to {length_step} (this model's down-sampling grid repeats "
                            f"every {length_step} samples)")
    return tuple(k * length_step // shifts for k in range(shifts))


class _ShiftMean:
    """The mean of ``n`` streams of estimates of the same positions, which arrive with different lags."""

    def __init__(self, n: int):
        self.pending: list[torch.Tensor | None] = [None] * n

    def push(self, k: int, estimates: torch.Tensor) -> None:
        """The next ``[..., m]`` estimates of stream ``k``."""
        have = self.pending[k]
        self.pending[k] = estimates if have is None else torch.cat([have, estimates], -1)

    def pop(self) -> torch.Tensor:
        """The mean over the streams of the positions that all of them have reached."""
        if len(self.pending) == 1:  # no arithmetic at all: one shift is the plain separation, bit for bit
            ready, self.pending[0] = self.pending[0], None
            return ready
        n = min(p.shape[-1] for p in self.pending)
        ready = torch.stack([p[..., :n] for p in self.pending]).mean(0)
        self.pending = [p[..., n:] for p in self.pending]
        return ready


class _Delay:
    """The input mixture, held from where the estimates emitted so far end: stems made from it need it there."""

    def __init__(self):
        self.blocks: list[torch.Tensor] = []

    def push(self, block: torch.Tensor) -> None:
        self.blocks.append(block)

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` samples, ``[C, n]``."""
        held = torch.cat(self.blocks, -1) if len(self.blocks) > 1 else self.blocks[0]
        if held.shape[-1] < n:
            raise RuntimeError(f"the mixture is {n - held.shape[-1]} samples behind the estimates")
        self.blocks = [held[..., n:]]
        return held[..., :n]


def _runs_on_gpu(model: nn.Module) -> bool:
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else getattr(model, "device", torch.device("cpu"))
    return torch.device(device).type in ("cuda", "mps")


def separate_stream(
    model: nn.Module,
    blocks: Iterable[torch.Tensor],
    sample_rate: int,
    length: int,
    *,
    window: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[float], None] | None = None,
    two_stems: str | None = None,
    shifts: int = 1,
    difference: str = DEFAULT_DIFFERENCE,
) -> Iterator[torch.Tensor]:
    """Separate a mixture that arrives block by block.

    Args:
        model: a Wave-U-Net in eval mode, on the device to run on (or an ONNX model, see
            :mod:`waveunet.onnx_model`).
        blocks: the mixture, ``[model channels, n]`` blocks at ``sample_rate`` Hz, ``length`` samples in all.
        window: output samples per window, see :func:`inference_tiling`.
        batch_size: windows per forward pass (default :data:`BATCH_SIZE`, :data:`CUDA_BATCH_SIZE` on a GPU).
        progress: called with the seconds of audio separated so far.
        two_stems, difference: which stems, see :func:`stem_plan`.
        shifts: average this many separations on evenly spaced offsets of the down-sampling grid
            (:func:`shift_offsets`); 1 (the default) is the plain separation.

    Yields:
        the estimates, ``[stems, model channels, n]`` blocks at ``sample_rate``, ``length`` samples in
        all; the stems are :func:`stem_names`.
    """
    plan = stem_plan(model.config, two_stems=two_stems, difference=difference)
    offsets = shift_offsets(model.length_step, shifts)
    rate, sources = model.config.sample_rate, len(model.config.sources)
    if batch_size is None:
        batch_size = CUDA_BATCH_SIZE if _runs_on_gpu(model) else BATCH_SIZE
    to_model, from_model = StreamResampler(sample_rate, rate), StreamResampler(rate, sample_rate)
    total = _model_length(model, length, sample_rate)
    tiling = inference_tiling(model, window, total)
    hop, kept, context = tiling.hop[0], tiling.kept[0], tiling.context[0]
    # mixture before a region that its first window reads (that of the most shifted grid)
    behind = context + hop * ((kept - 1) // hop) + offsets[-1]
    ahead = context + kept - hop  # and after it, for its last window
    windows = max(1, round(BLOCK_SECONDS * rate / hop / batch_size)) * batch_size
    step = windows * hop  # model-rate estimates per region: regions start on the window grid
    mean, mixture = _ShiftMean(len(offsets)), _Delay() if plan.needs_mixture else None

    buffer = None  # the model-rate mixture from sample `start` on
    start = done = emitted = 0

    def predict(stop: int) -> torch.Tensor:
        """The model-rate estimates of the resampled sources, averaged over the shifts, up to where all shifts reach."""
        for k, offset in enumerate(offsets):
            def report(finished: int, of: int, k: int = k) -> None:
                if progress is not None:
                    progress(min(done + (stop - done) * (k + finished / of) / len(offsets), stop) / rate)

            # the grid shifted by `offset`: this shift's region lags by as much (the last one reaches the end)
            begin, end = done - offset, stop - offset if stop < total else total
            estimates = tiled_forward(model, buffer, tiling, region=[(begin - start, end - start)], padding="zeros",
                                      batch_size=batch_size, progress=report)
            if len(plan.resampled) < sources:
                estimates = estimates[list(plan.resampled)]
            mean.push(k, estimates[..., max(0, -begin):])  # nothing before the song's start
        return mean.pop()

    def emit(estimates: torch.Tensor) -> torch.Tensor:
        nonlocal emitted
        estimates = estimates[..., : length - emitted]
        n = estimates.shape[-1]
        emitted += n
        if n == 0:  # (the resampler's flush may be a bare empty tensor)
            return estimates.new_zeros(len(plan.names), model.config.channels, 0)
        return plan.assemble(estimates, mixture.take(n).to(estimates) if plan.needs_mixture else None)

    def model_rate_mixture() -> Iterator[torch.Tensor]:
        for block in blocks:
            if mixture is not None:
                mixture.push(block)
            yield to_model.push(block)
        yield to_model.flush()

    for chunk in model_rate_mixture():
        buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=-1)
        while start + buffer.shape[-1] >= done + step + ahead:
            estimates = predict(done + step)
            done += step
            buffer, start = buffer[..., max(0, done - behind) - start:], max(0, done - behind)
            yield emit(from_model.push(estimates))
    while done < total:  # the buffer now reaches the song's end: windows beyond it see zeros
        estimates = predict(min(done + step, total))
        done = min(done + step, total)
        yield emit(from_model.push(estimates))
    yield emit(from_model.flush())


def _model_length(model: nn.Module, length: int, sample_rate: int) -> int:
    """Samples of a ``length``-sample signal at ``sample_rate`` after resampling to the model's rate (torchaudio's rounding)."""
    return math.ceil(length * model.config.sample_rate / sample_rate)


@contextmanager
def evaluating(model: nn.Module, device: torch.device):
    """``model`` in eval mode on ``device`` in full float32, its training mode restored afterwards.

    cuDNN would otherwise convolve in TF32 (a 10-bit mantissa): 7e-3 off the float32 result for the
    PyTorch Wave-U-Net, where separation on a GPU stays within 2e-5 of the CPU's without it.
    """
    training, tf32 = model.training, torch.backends.cudnn.allow_tf32
    model.eval().to(device)
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield model
    finally:
        model.train(training)
        torch.backends.cudnn.allow_tf32 = tf32


def check_audio_model(model: nn.Module) -> None:
    """:class:`WaveUNetError` unless ``model`` is a Wave-U-Net (audio) model."""
    config = getattr(model, "config", None)
    if config is None:
        raise WaveUNetError(f"model {type(model).__name__}: not a waveunet model (it has no config)")
    check_kind(config, "audio", f"model {config.name}")


def separate(
    model: nn.Module,
    audio: torch.Tensor,
    sample_rate: int,
    *,
    device: str | torch.device | None = None,
    downmix: bool = False,
    window: int | None = None,
    batch_size: int | None = None,
    two_stems: str | None = None,
    shifts: int = 1,
    difference: str = DEFAULT_DIFFERENCE,
) -> dict[str, torch.Tensor]:
    """Separate a mixture held in memory.

    Args:
        model: a Wave-U-Net (see :func:`waveunet.load_model`), or an ONNX model (:mod:`waveunet.onnx_model`).
        audio: the mixture, ``[channels, time]`` (or ``[time]`` for mono) at ``sample_rate`` Hz. Mono
            into a stereo model is duplicated, stereo into a mono model averaged; more than two
            channels need ``downmix`` (averaged to mono).
        device: ``cpu``, ``cuda``, ``mps`` or ``auto`` (default); the model is moved there.
        window: output samples per window (translation-equivariant models only); default about
            :data:`WINDOW_SECONDS` seconds.
        two_stems: a source: return it and ``no_<source>`` (the mixture minus it) only.
        shifts: average this many separations on shifted down-sampling grids (N times the work).
        difference: ``input`` (default) or ``model``: where a difference-output model's last source
            is formed, see :func:`stem_plan`.

    Returns:
        ``{stem: [model channels, time]}`` at ``sample_rate``, as long as ``audio``; the stems are
        :func:`stem_names`. With ``two_stems`` or a difference-output model (``difference="input"``)
        they sum to the mixture (as the model takes it: its channels) up to float rounding.
    """
    check_audio_model(model)
    names = stem_names(model.config, two_stems=two_stems, difference=difference)
    audio = torch.as_tensor(audio)
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[-1] == 0:
        raise WaveUNetError(f"audio: expected a non-empty [channels, time] tensor, got shape {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise WaveUNetError("audio: contains NaN or infinite samples")
    mixture = match_channels(audio.float(), model.config.channels, downmix)
    with evaluating(model, resolve_device(device, mps=True)):
        estimates = torch.cat(list(separate_stream(model, [mixture], sample_rate, mixture.shape[-1], window=window,
                                                   batch_size=batch_size, two_stems=two_stems, shifts=shifts,
                                                   difference=difference)), -1)
    return dict(zip(names, estimates))
