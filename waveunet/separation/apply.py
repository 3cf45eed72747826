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
"""

from __future__ import annotations

import math
from contextlib import contextmanager
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


def stem_names(config) -> tuple[str, ...]:
    """The stems :func:`separate_stream` yields for a model of ``config``, in order."""
    return tuple(config.sources)


def separate_stream(
    model: nn.Module,
    blocks: Iterable[torch.Tensor],
    sample_rate: int,
    length: int,
    *,
    window: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Separate a mixture that arrives block by block.

    Args:
        model: a Wave-U-Net in eval mode, on the device to run on.
        blocks: the mixture, ``[model channels, n]`` blocks at ``sample_rate`` Hz, ``length`` samples in all.
        window: output samples per window, see :func:`inference_tiling`.
        batch_size: windows per forward pass (default :data:`BATCH_SIZE`, :data:`CUDA_BATCH_SIZE` on a GPU).
        progress: called with the seconds of audio separated so far.

    Yields:
        the estimates, ``[stems, model channels, n]`` blocks at ``sample_rate``, ``length`` samples in
        all; the stems are :func:`stem_names`.
    """
    rate = model.config.sample_rate
    if batch_size is None:
        batch_size = CUDA_BATCH_SIZE if next(model.parameters()).device.type == "cuda" else BATCH_SIZE
    to_model, from_model = StreamResampler(sample_rate, rate), StreamResampler(rate, sample_rate)
    total = _model_length(model, length, sample_rate)
    tiling = inference_tiling(model, window, total)
    hop, kept, context = tiling.hop[0], tiling.kept[0], tiling.context[0]
    behind = context + hop * ((kept - 1) // hop)  # mixture before a region that its first window reads
    ahead = context + kept - hop  # and after it, for its last window
    windows = max(1, round(BLOCK_SECONDS * rate / hop / batch_size)) * batch_size
    step = windows * hop  # model-rate estimates per region: regions start on the window grid

    buffer = None  # the model-rate mixture from sample `start` on
    start = done = emitted = 0

    def predict(stop: int) -> torch.Tensor:
        def report(finished: int, _: int) -> None:
            if progress is not None:
                progress(min(done + finished * hop, stop) / rate)

        return tiled_forward(model, buffer, tiling, region=[(done - start, stop - start)], padding="zeros",
                             batch_size=batch_size, progress=report)

    def emit(estimates: torch.Tensor) -> torch.Tensor:
        nonlocal emitted
        estimates = estimates[..., : length - emitted]
        emitted += estimates.shape[-1]
        return estimates

    def model_rate_mixture() -> Iterator[torch.Tensor]:
        for block in blocks:
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
) -> dict[str, torch.Tensor]:
    """Separate a mixture held in memory.

    Args:
        model: a Wave-U-Net (see :func:`waveunet.load_model`).
        audio: the mixture, ``[channels, time]`` (or ``[time]`` for mono) at ``sample_rate`` Hz. Mono
            into a stereo model is duplicated, stereo into a mono model averaged; more than two
            channels need ``downmix`` (averaged to mono).
        device: ``cpu``, ``cuda`` or ``auto`` (default); the model is moved there.
        window: output samples per window (translation-equivariant models only); default about
            :data:`WINDOW_SECONDS` seconds.

    Returns:
        ``{source: [model channels, time]}`` at ``sample_rate``, as long as ``audio``.
    """
    check_audio_model(model)
    audio = torch.as_tensor(audio)
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[-1] == 0:
        raise WaveUNetError(f"audio: expected a non-empty [channels, time] tensor, got shape {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise WaveUNetError("audio: contains NaN or infinite samples")
    mixture = match_channels(audio.float(), model.config.channels, downmix)
    with evaluating(model, resolve_device(device)):
        estimates = torch.cat(list(separate_stream(model, [mixture], sample_rate, mixture.shape[-1],
                                                   window=window, batch_size=batch_size)), -1)
    return dict(zip(stem_names(model.config), estimates))
