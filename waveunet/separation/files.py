"""Separating audio files: one song into stem files, and many songs in one run.

:func:`separate_file` reads, resamples, separates and writes block by block
(:func:`~waveunet.separation.apply.separate_stream`), so a long song is never held in memory; the
stems of a song appear together when it is done, or not at all (:class:`waveunet.atomic.AtomicGroup`).
:func:`separate_files` runs it over many inputs, reporting a bad input on one line and going on
with the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..atomic import AtomicGroup, check_destination
from ..audio import audio_info, match_channels, open_stream, read_audio
from ..device import resolve_device
from ..errors import WaveUNetError
from ..progress import SecondsBar
from .apply import BLOCK_SECONDS, check_audio_model, evaluating, separate_stream, stem_names


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
    **engine,
) -> SeparatedFile:
    """Separate an audio file into ``<out>/<track name>/<source>.<format>``, streaming.

    The file is read, resampled, separated and written block by block; the outputs appear together
    when the whole song is done (nothing is left behind if anything fails). Existing outputs are
    kept unless ``force``. ``sources`` selects which estimates to write (default all); ``bits`` is
    16, 24 or 32 (float WAV); ``engine``: the separation's options (``two_stems``, ``shifts``,
    ``difference`` of :func:`~waveunet.separation.apply.separate_stream`). Raises
    :class:`WaveUNetError` naming the file for anything wrong with the input or the output folder.
    """
    check_audio_model(model)
    path = Path(path)
    config = model.config
    stems = stem_names(config, **engine)
    sources = list(stems if sources is None else sources)
    unknown = [s for s in sources if s not in stems]
    if unknown:
        raise WaveUNetError(f"sources: {', '.join(unknown)} not among the model's sources ({', '.join(stems)})")
    info = audio_info(path)
    if info.frames == 0:
        raise WaveUNetError(f"{path}: audio file is empty (zero samples)")
    if info.channels > 2 and not downmix:
        raise WaveUNetError(f"{path}: has {info.channels} channels; only mono and stereo are supported (use --downmix)")
    track_dir = Path(out) / path.stem
    targets = output_paths(track_dir, sources, format)
    if not force:
        for target in targets.values():
            if target.exists():
                check_destination(target, force)

    device = resolve_device(device, mps=True)
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

    bar = SecondsBar(path.stem, info.duration, enabled=progress)
    began = time.perf_counter()
    try:
        with evaluating(model, device), AtomicGroup(force=force) as group:
            writers = {s: open_stream(group, p, info.sample_rate, config.channels, format, bits) for s, p in targets.items()}
            for estimates in separate_stream(model, mixture(), info.sample_rate, info.frames,
                                             window=window, batch_size=batch_size, progress=bar.update_to, **engine):
                for source, estimate in zip(stems, estimates):
                    if source in writers:
                        writers[source].write(estimate)
    except BaseException:
        if created and track_dir.is_dir() and not any(track_dir.iterdir()):
            track_dir.rmdir()
        raise
    finally:
        bar.close()
    return SeparatedFile(path, targets, info.duration, time.perf_counter() - began)


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
