"""Separating songs: a Wave-U-Net over audio of any length, rate and channel count.

The mixture is brought to the model's rate (torchaudio's sinc resampling) and channel count, cut into
windows by :func:`waveunet.tiling.tiled_forward`, and the estimates are brought back to the input's
rate and length. Everything streams: the song goes through in blocks of a few seconds (resampled
block-wise, exactly as a whole-song resampling would, see :class:`waveunet.audio.StreamResampler`),
so :func:`separate_file` holds a few blocks, never the song, and its memory does not grow with the
song's length.

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
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from .audio import AtomicGroup, StreamResampler, audio_info, match_channels, read_audio
from .device import resolve_device
from .errors import WaveUNetError
from .tiling import Tiling, exact_tiling, faded_tiling, tiled_forward

#: output seconds per window for translation-equivariant models (see benchmarks/separate.py)
WINDOW_SECONDS = 8.0
#: windows per forward pass on the CPU, where batching only thrashes the caches (see benchmarks/separate.py)
BATCH_SIZE = 1
#: and on a GPU, which needs many windows at once to be busy
CUDA_BATCH_SIZE = 16
#: seconds of audio read, resampled and written at a time
BLOCK_SECONDS = 10.0


@dataclass(frozen=True)
class SeparatedFile:
    """What :func:`separate_file` wrote for one input."""

    input: Path
    outputs: dict[str, Path]
    duration: float  # seconds of audio
    elapsed: float  # seconds of processing

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio duration (below 1: faster than real time)."""
        return self.elapsed / self.duration


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
        the estimates, ``[sources, model channels, n]`` blocks at ``sample_rate``, ``length`` samples in all.
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
def _evaluating(model: nn.Module, device: torch.device):
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


def _check_model(model: nn.Module) -> None:
    from .models.wave_u_net import WaveUNet

    if not isinstance(model, WaveUNet):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise WaveUNetError(f"model {name}: not a Wave-U-Net (audio) model; images are segmented with `waveunet image segment`")


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
    _check_model(model)
    audio = torch.as_tensor(audio)
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[-1] == 0:
        raise WaveUNetError(f"audio: expected a non-empty [channels, time] tensor, got shape {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise WaveUNetError("audio: contains NaN or infinite samples")
    mixture = match_channels(audio.float(), model.config.channels, downmix)
    with _evaluating(model, resolve_device(device)):
        estimates = torch.cat(list(separate_stream(model, [mixture], sample_rate, mixture.shape[-1],
                                                   window=window, batch_size=batch_size)), -1)
    return dict(zip(model.config.sources, estimates))


def output_paths(track_dir: Path, sources: Sequence[str], format: str) -> dict[str, Path]:
    """``<track_dir>/<source>.<format>`` for each source."""
    return {source: track_dir / f"{source}.{format}" for source in sources}


def separate_file(
    path: str | Path,
    model: nn.Module,
    out: str | Path,
    *,
    sources: Sequence[str] | None = None,
    format: str = "wav",
    bits: int = 16,
    device: str | torch.device | None = None,
    force: bool = False,
    downmix: bool = False,
    window: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> SeparatedFile:
    """Separate an audio file into ``<out>/<track name>/<source>.<format>``, streaming.

    The file is read, resampled, separated and written block by block; the outputs appear together
    when the whole song is done (nothing is left behind if anything fails). Existing outputs are
    kept unless ``force``. ``sources`` selects which estimates to write (default all); ``bits`` is
    16, 24 or 32 (float WAV). Raises :class:`WaveUNetError` naming the file for anything wrong with
    the input or the output folder.
    """
    _check_model(model)
    path = Path(path)
    config = model.config
    sources = list(config.sources if sources is None else sources)
    unknown = [s for s in sources if s not in config.sources]
    if unknown:
        raise WaveUNetError(f"sources: {', '.join(unknown)} not among the model's sources ({', '.join(config.sources)})")
    info = audio_info(path)
    if info.frames == 0:
        raise WaveUNetError(f"{path}: audio file is empty (zero samples)")
    if info.channels > 2 and not downmix:
        raise WaveUNetError(f"{path}: has {info.channels} channels; only mono and stereo are supported (use --downmix)")
    targets = output_paths(Path(out) / path.stem, sources, format)
    if not force:
        existing = [p for p in targets.values() if p.exists()]
        if existing:
            raise WaveUNetError(f"{existing[0]}: already exists (use --force to overwrite)")

    device = resolve_device(device)
    track_dir = Path(out) / path.stem
    created = not track_dir.exists()
    try:
        track_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WaveUNetError(f"{track_dir}: cannot create output folder ({error.strerror})") from None
    block = max(1, round(BLOCK_SECONDS * info.sample_rate))

    def mixture() -> Iterator[torch.Tensor]:
        for begin in range(0, info.frames, block):
            audio, _ = read_audio(path, begin, block)
            yield match_channels(audio, config.channels, downmix, name=str(path))

    bar = _ProgressBar(path.stem, info.duration, enabled=progress)
    began = time.perf_counter()
    try:
        with _evaluating(model, device), AtomicGroup(overwrite=force) as group:
            writers = {s: group.open_stream(p, info.sample_rate, config.channels, format, bits) for s, p in targets.items()}
            for estimates in separate_stream(model, mixture(), info.sample_rate, info.frames,
                                             window=window, batch_size=batch_size,
                                             progress=bar.update_to):
                for source, estimate in zip(config.sources, estimates):
                    if source in writers:
                        writers[source].write(estimate)
    except BaseException:
        if created and track_dir.is_dir() and not any(track_dir.iterdir()):
            track_dir.rmdir()
        raise
    finally:
        bar.close()
    return SeparatedFile(path, targets, info.duration, time.perf_counter() - began)


class _ProgressBar:
    """A tqdm bar over seconds of audio (or nothing, when disabled)."""

    def __init__(self, name: str, seconds: float, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=round(seconds, 1), desc=name, unit="s", leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]")

    def update_to(self, seconds: float) -> None:
        if self._bar is not None:
            self._bar.update(min(seconds, self._bar.total) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ------------------------------------------------------------------------------------ many files

#: said once on stderr when the bundled demonstration model separates
DEMO_NOTICE = (
    "Note: the bundled 'demo' model is a small demonstration model trained on seconds of audio; expect rough "
    "results. For a real one, train a recipe on MUSDB18 (`waveunet train recipes/M4.toml --out runs/m4 ...`) "
    "or import a pretrained PyTorch Wave-U-Net checkpoint (`waveunet import-checkpoint`), then pass it with --model."
)


def load_separation_model(name_or_path: str, device: str | torch.device | None = None) -> tuple[nn.Module, str]:
    """A Wave-U-Net from a bundled name or checkpoint file, and the name its outputs go under.

    The name is the bundled name or the file's stem (``separated/<name>`` is the default output folder).
    """
    from .checkpoint import load_model

    model = load_model(name_or_path, device=resolve_device(device))
    from .models.config import WaveUNetConfig

    if not isinstance(model.config, WaveUNetConfig):
        raise WaveUNetError(f"{name_or_path}: a 2D U-Net (image) checkpoint, not a Wave-U-Net; use `waveunet image segment`")
    return model, Path(str(name_or_path)).stem


def is_bundled_demo(name_or_path: str) -> bool:
    """Whether ``name_or_path`` picks the bundled demonstration model."""
    from .checkpoint import PRETRAINED_DIR, resolve_checkpoint

    try:
        return resolve_checkpoint(name_or_path).resolve() == (PRETRAINED_DIR / "demo.pt").resolve()
    except WaveUNetError:
        return False


def separate_files(
    paths: Sequence[str | Path],
    model: nn.Module,
    out: str | Path,
    *,
    echo: Callable[[str, bool], None],
    **options,
) -> tuple[list[SeparatedFile], list[WaveUNetError]]:
    """:func:`separate_file` for each path; a failing input is reported and the others still run.

    ``echo(line, is_error)`` receives one line per input and a summary line with the real-time
    factor. Returns what was written and the errors.
    """
    done, errors = [], []
    for path in paths:
        try:
            result = separate_file(path, model, out, **options)
        except WaveUNetError as error:
            errors.append(error)
            echo(f"Error: {error}", True)
            continue
        done.append(result)
        folder = next(iter(result.outputs.values())).parent
        echo(f"{result.input} -> {folder}/ ({', '.join(p.name for p in result.outputs.values())}): "
             f"{result.duration:.1f} s of audio in {result.elapsed:.1f} s", False)
    if done:
        audio = sum(r.duration for r in done)
        elapsed = sum(r.elapsed for r in done)
        echo(f"Separated {len(done)} of {len(paths)} file(s), {audio:.1f} s of audio in {elapsed:.1f} s: "
             f"real-time factor {elapsed / audio:.3f} ({audio / elapsed:.1f}x faster than real time)", False)
    return done, errors
