"""Separating audio files: one song into stem files, and many songs (files and folders) in one run.

:func:`separate_file` reads, resamples, separates and writes block by block
(:func:`~waveunet.separation.apply.separate_stream`), so a long song is never held in memory; the
stems of a song appear together when it is done, or not at all (:class:`waveunet.atomic.AtomicGroup`).
:func:`separate_files` runs it over many inputs, reporting a bad input on one line and going on
with the others.

What a run does before any work, so that it fails at once rather than after hours:

1. the format, bits and quality, and whether the format holds the model's channels;
2. the inputs (folders searched, :mod:`.inputs`) and where each stem goes (:mod:`.naming`): two
   outputs that would be one file are refused in one line naming both inputs;
3. each input's header (missing, empty, truncated, too many channels: that input fails, the
   others go on), and whether its outputs are all there and complete (then it is skipped:
   a rerun resumes where a crash or Ctrl-C stopped it), or some other file is in the way;
4. free space, where the outputs' size is known (WAV), for all the outputs together;
5. temporary files that killed runs left in the output folders are removed.

Right before each song, its outputs and the free space are checked again (another process may
have written them, or filled the disk, meanwhile). Folders a failed song's outputs would have gone
into are removed again if this run created them.
"""

from __future__ import annotations

import inspect
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import soundfile as sf
import torch

from ..atomic import (AtomicGroup, NoSpaceError, check_free_space, make_folders, remove_empty_folders,
                      remove_stale_temporaries)
from ..audio import StreamResampler, audio_info, match_channels, open_stream, read_audio
from ..audio.reading import AudioInfo
from ..audio.writing import (CAPACITY, check_capacity, check_format, encoded_bytes, output_rate,
                             resampled_length)
from ..device import resolve_device
from ..errors import WaveUNetError
from ..progress import SecondsBar, format_bytes, format_seconds, speed
from .apply import BLOCK_SECONDS, check_audio_model, evaluating, separate_stream, stem_names
from .inputs import Input, find_inputs
from .naming import DEFAULT_FILENAME, output_folders, plan_outputs

#: ``echo(line, is_error)``: where a run's lines go
Echo = Callable[[str, bool], None]


@dataclass(frozen=True)
class SeparatedFile:
    """What :func:`separate_file` did for one input.

    ``outputs``: every chosen stem's file; ``written``: the stems written now (the others were there
    already, complete; none: the input was skipped); ``clipped``: samples beyond [-1, 1] clipped, per stem.
    """

    input: Path
    outputs: dict[str, Path]
    duration: float  # seconds of audio
    elapsed: float  # seconds of processing
    written: tuple[str, ...] = ()
    clipped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return not self.written

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio duration (below 1: faster than real time)."""
        return self.elapsed / self.duration


@dataclass
class BatchResult:
    """What :func:`separate_files` did: the inputs separated, skipped and failed (with why)."""

    done: list[SeparatedFile] = field(default_factory=list)
    skipped: list[SeparatedFile] = field(default_factory=list)
    failed: list[tuple[Path, WaveUNetError]] = field(default_factory=list)

    @property
    def errors(self) -> list[WaveUNetError]:
        return [error for _, error in self.failed]


@dataclass(frozen=True)
class FileOptions:
    """How a run reads its inputs and writes their stems (the keyword options of :func:`separate_file`).

    Attributes:
        sources: the stems to write (default: all the engine yields).
        format: ``wav``, ``flac``, ``mp3``, ``ogg`` or ``opus``; ``bits``: 16, 24 or 32 (float WAV),
            for wav/flac; ``quality``: 0-10 for mp3/ogg/opus (None: libsndfile's default).
        filename: the ``--filename`` template (:mod:`.naming`); ``model_name``: its ``{model}``
            (default: the model's config name).
        device: where the model runs; ``force``: separate again and replace outputs that are
            there; ``downmix``: average inputs of more than two channels to mono; ``progress``:
            show progress bars.
        engine: keyword options of :func:`~waveunet.separation.apply.separate_stream` and
            :func:`~waveunet.separation.apply.stem_names` (``window``, ``batch_size``, ...), each
            getting those it takes.
    """

    sources: Sequence[str] | None = None
    format: str = "wav"
    bits: int = 16
    quality: float | None = None
    filename: str = DEFAULT_FILENAME
    model_name: str | None = None
    device: str | torch.device | None = None
    force: bool = False
    downmix: bool = False
    progress: bool = True
    engine: Mapping = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping) -> "FileOptions":
        """The options named by :class:`FileOptions`' fields; all others are engine options."""
        names = {f.name for f in fields(cls)} - {"engine"}
        return cls(**{k: v for k, v in options.items() if k in names},
                   engine={k: v for k, v in options.items() if k not in names})


@dataclass(frozen=True)
class _Job:
    """One input, checked and planned: its header, its outputs, the rate and length they get."""

    input: Input
    info: AudioInfo
    outputs: dict[str, Path]
    rate: int
    frames: int


def output_paths(track_dir: Path, sources: Sequence[str], format: str) -> dict[str, Path]:
    """``<track_dir>/<source>.<format>`` for each source (the default ``--filename``)."""
    return {source: track_dir / f"{source}.{format}" for source in sources}


def _accepted(function: Callable, options: Mapping) -> dict:
    """The ``options`` that ``function`` takes: engine options reach the engine's functions that use them."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters}
    return {key: value for key, value in options.items() if key in names}


def _chosen_stems(model, o: FileOptions) -> tuple[tuple[str, ...], list[str]]:
    """All the stems the engine yields, and those to write."""
    stems = stem_names(model.config, **_accepted(stem_names, o.engine))
    chosen = list(stems if o.sources is None else dict.fromkeys(o.sources))
    unknown = [s for s in chosen if s not in stems]
    if unknown or not chosen:
        raise WaveUNetError(f"--sources {','.join(chosen)}: {', '.join(unknown) or 'none'} not among the model's "
                            f"stems ({', '.join(stems)})")
    return stems, chosen


def _check_header(item: Input, channels: int, o: FileOptions) -> tuple[AudioInfo, int, int]:
    """The input's header, and the rate and length of its outputs; :class:`WaveUNetError` for a bad input."""
    path = item.path
    info = audio_info(path)
    if info.frames == 0:
        raise WaveUNetError(f"{path}: audio file is empty (zero samples)")
    if info.channels > 2 and not o.downmix:
        raise WaveUNetError(f"{path}: has {info.channels} channels; only mono and stereo are supported (use --downmix)")
    rate = output_rate(o.format, info.sample_rate)
    frames = resampled_length(info.frames, info.sample_rate, rate)
    check_capacity(o.format, o.bits, channels, rate, frames, name=path)
    return info, rate, frames


def _complete(path: Path, rate: int, frames: int, channels: int) -> str:
    """Why the file at ``path`` is not a complete output of this rate, length and channels ("" if it is)."""
    if path.is_dir():
        return "is a folder"
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return "not a readable audio file"
    if (info.samplerate, info.channels) != (rate, channels):
        return f"{info.channels} channel(s) at {info.samplerate} Hz, not {channels} at {rate} Hz"
    if info.frames != frames:
        return f"{info.frames} of {frames} samples"
    return ""


def _to_write(job: _Job, channels: int, force: bool) -> list[str]:
    """The stems of ``job`` to write: all with ``force``, else those whose file is not there yet.

    Raises :class:`WaveUNetError` for an existing file that is not a complete output (without ``force``).
    """
    if force:
        return list(job.outputs)
    missing = []
    for stem, path in job.outputs.items():
        if not os.path.lexists(path):
            missing.append(stem)
            continue
        problem = _complete(path, job.rate, job.frames, channels)
        if problem:
            raise WaveUNetError(f"{path}: already exists, and is not a complete {stem} of {job.input.path} "
                                f"({problem}); use --force to replace it")
    return missing


def _needs(job: _Job, stems: Sequence[str], channels: int, o: FileOptions) -> dict[Path, int]:
    """Bytes the ``stems`` of ``job`` need, per output folder, where known (WAV)."""
    needs: dict[Path, int] = defaultdict(int)
    for stem in stems:
        size = encoded_bytes(o.format, o.bits, job.frames, channels)
        if size is not None:
            needs[job.outputs[stem].parent] += size
    return needs


def _check_space(needs: Mapping[Path, int], what: str) -> None:
    """Free space for ``needs`` (bytes per folder), summed over the folders of one file system."""
    by_device: dict[int, tuple[Path, int]] = {}
    for folder, size in needs.items():
        probe = folder.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        device = probe.stat().st_dev
        first, total = by_device.get(device, (folder, 0))
        by_device[device] = (first, total + size)
    for folder, total in by_device.values():
        check_free_space(folder, total, what)


def _plan(inputs: Sequence[str | os.PathLike], model, out: Path, recursive: bool, o: FileOptions
          ) -> tuple[tuple[str, ...], list[_Job], list[_Job], list[tuple[Path, WaveUNetError]]]:
    """Everything checked before any work: ``(stems, jobs to run, jobs already done, failures)``."""
    check_audio_model(model)
    unknown = set(o.engine) - set(_accepted(separate_stream, o.engine)) - set(_accepted(stem_names, o.engine))
    if unknown:
        raise TypeError(f"unknown separation options: {', '.join(sorted(unknown))}")
    check_format(o.format, o.bits, o.quality)
    channels = model.config.channels
    check_capacity(o.format, o.bits, channels, name=f"--format {o.format}")
    stems, chosen = _chosen_stems(model, o)
    found, failures = find_inputs(inputs, recursive, exclude=out)
    plans = plan_outputs(found, chosen, out, o.filename, o.format, o.model_name or model.config.name)
    todo, done = [], []
    for item, outputs in plans.items():
        try:
            info, rate, frames = _check_header(item, channels, o)
            job = _Job(item, info, outputs, rate, frames)
            (todo if _to_write(job, channels, o.force) else done).append(job)
        except WaveUNetError as error:
            failures.append((item.path, error))
    return stems, todo, done, failures


def separate_file(path: str | os.PathLike, model, out: str | os.PathLike, **options) -> SeparatedFile:
    """Separate an audio file into ``<out>/<track name>/<stem>.<format>`` (or as ``filename`` says), streaming.

    The file is read, resampled, separated and written block by block; the outputs appear together
    when the whole song is done (nothing is left behind if anything fails). Outputs already there
    and complete are kept (all there: nothing is done, ``written`` is empty); any other file in the
    way is an error unless ``force``. ``options``: the fields of :class:`FileOptions` (``sources``,
    ``format``, ``bits``, ``quality``, ``filename``, ``force``, ...), and the engine's
    (``window``, ``batch_size``, ...). Raises :class:`WaveUNetError` naming the file for anything
    wrong with the input or the output folder.
    """
    o = FileOptions.of(options)
    if Path(path).is_dir():
        raise WaveUNetError(f"{path}: is a folder (separate_files takes folders)")
    stems, todo, done, failures = _plan([path], model, Path(out), False, o)
    if failures:
        raise failures[0][1]
    job = (todo or done)[0]
    for folder in output_folders({job.input: job.outputs}):
        remove_stale_temporaries(folder)
    return _run(job, model, stems, o)


def _run(job: _Job, model, stems: Sequence[str], o: FileOptions) -> SeparatedFile:
    """Separate one planned input; its outputs are checked once more first (and skipped if all there)."""
    config, path, info = model.config, job.input.path, job.info
    channels = config.channels
    chosen = _to_write(job, channels, o.force)  # again: another process may have written them meanwhile
    if not chosen:
        return SeparatedFile(path, job.outputs, info.duration, 0.0)
    what = f"the outputs of {path}"
    _check_space(_needs(job, chosen, channels, o), what)
    device = resolve_device(o.device, mps=True)
    created: list[Path] = []
    block = max(1, round(BLOCK_SECONDS * info.sample_rate))

    def mixture() -> Iterator[torch.Tensor]:
        for begin in range(0, info.frames, block):
            audio, _ = read_audio(path, begin, block)
            yield match_channels(audio, channels, o.downmix, name=str(path))

    bar = SecondsBar(path.stem, info.duration, enabled=o.progress)
    began = time.perf_counter()
    writers = {}
    try:
        for folder in output_folders({job.input: {s: job.outputs[s] for s in chosen}}):
            created += make_folders(folder)
        resamplers = {s: StreamResampler(info.sample_rate, job.rate) for s in chosen} if job.rate != info.sample_rate else {}
        with evaluating(model, device), AtomicGroup(force=o.force) as group:
            for stem in chosen:
                writers[stem] = open_stream(group, job.outputs[stem], job.rate, channels, o.format, o.bits, o.quality)
            for estimates in separate_stream(model, mixture(), info.sample_rate, info.frames, progress=bar.update_to,
                                             **_accepted(separate_stream, o.engine)):
                for stem, estimate in zip(stems, estimates):
                    if stem in writers:
                        writers[stem].write(resamplers[stem].push(estimate) if resamplers else estimate)
            for stem, resampler in resamplers.items():
                writers[stem].write(resampler.flush())
    except NoSpaceError:
        remove_empty_folders(created)
        raise NoSpaceError(job.outputs[chosen[0]].parent, _estimate(writers, job, channels, chosen, o), what) from None
    except BaseException:
        remove_empty_folders(created)
        raise
    finally:
        bar.close()
    clipped = {stem: writer.clipped for stem, writer in writers.items() if writer.clipped}
    return SeparatedFile(path, job.outputs, info.duration, time.perf_counter() - began, tuple(chosen), clipped)


def _estimate(writers: Mapping, job: _Job, channels: int, stems: Sequence[str], o: FileOptions) -> int | None:
    """Bytes the outputs need: exact where the format tells, else extrapolated from what was written."""
    total = 0
    for stem in stems:
        size = encoded_bytes(o.format, o.bits, job.frames, channels)
        writer = writers.get(stem)
        if size is None and writer is not None and writer.frames:
            size = round(writer.bytes / writer.frames * job.frames)
        if size is None:
            return None
        total += size
    return total


def separate_files(inputs: Sequence[str | os.PathLike], model, out: str | os.PathLike, *, echo: Echo,
                   recursive: bool = False, **options) -> BatchResult:
    """Separate every file in ``inputs`` (files, and folders: their audio files; ``recursive``: also their subfolders').

    A failing input is reported on one line (``echo(line, True)``) and the others still run; inputs
    whose outputs are all there and complete are skipped (``force`` redoes them). Problems with the
    whole run (format, name clashes, free space) raise :class:`WaveUNetError` before any work. With
    more than one input, a summary line ends the run. An interrupt (``KeyboardInterrupt``) is raised
    again with a one-line message saying what was kept. ``options`` as for :func:`separate_file`.
    """
    o, out = FileOptions.of(options), Path(out)
    stems, todo, done, failures = _plan(inputs, model, out, recursive, o)
    result = BatchResult(failed=list(failures))
    for _, error in failures:
        echo(f"Error: {error}", True)
    # first: what killed runs left takes space too
    planned = {job.input: job.outputs for job in [*todo, *done]}
    removed = [p for folder in output_folders(planned) if folder.is_dir() for p in remove_stale_temporaries(folder)]
    if removed:
        folders = ", ".join(dict.fromkeys(str(p.parent) for p in removed))
        echo(f"Note: removed {len(removed)} temporary file(s) that killed runs left behind (in {folders})", True)
    channels = model.config.channels
    needs: dict[Path, int] = defaultdict(int)
    for job in todo:
        try:
            writing = _to_write(job, channels, o.force)
        except WaveUNetError:  # a file got in the way since the plan: that input fails when its turn comes
            continue
        for folder, size in _needs(job, writing, channels, o).items():
            needs[folder] += size
    _check_space(needs, f"the outputs of {len(todo)} file(s)" if len(todo) > 1 else
                 f"the outputs of {todo[0].input.path}" if todo else "the outputs")
    _notes(todo, o.format, echo)
    for job in done:
        result.skipped.append(SeparatedFile(job.input.path, job.outputs, job.info.duration, 0.0))
        echo(f"{job.input.path}: skipped, its outputs are all there (--force separates it again)", False)
    count = len(todo) + len(done) + len(failures)
    for job in todo:
        try:
            separated = _run(job, model, stems, o)
        except WaveUNetError as error:
            result.failed.append((job.input.path, error))
            echo(f"Error: {error}", True)
            continue
        except KeyboardInterrupt as interrupt:
            kept = f"the {len(result.done)} file(s) separated before it are kept; " if result.done else ""
            raise type(interrupt)(f"{job.input.path} was not written (no partial file is left); {kept}"
                                  f"run the same command again to go on") from None
        if separated.skipped:
            result.skipped.append(separated)
            echo(f"{job.input.path}: skipped, its outputs appeared meanwhile (another process?)", False)
            continue
        result.done.append(separated)
        echo(_done_line(separated), False)
        if separated.clipped:
            counts = ", ".join(f"{stem} {n}" for stem, n in separated.clipped.items())
            echo(f"Note: {job.input.path}: clipped samples beyond [-1, 1] to -1 or 1 ({counts})", True)
    if count > 1:
        echo(_summary(result, count), bool(result.failed))
    return result


def _notes(jobs: Sequence[_Job], format: str, echo: Echo) -> None:
    """One note for inputs whose rate the format does not take."""
    changed = sorted({(job.info.sample_rate, job.rate) for job in jobs if job.rate != job.info.sample_rate})
    if changed:
        rates = CAPACITY[format].rates
        pairs = ", ".join(f"{a} Hz -> {b} Hz" for a, b in changed)
        echo(f"Note: {format} takes only {', '.join(f'{r // 1000 if r % 1000 == 0 else r / 1000:g}' for r in rates)} kHz: "
             f"the outputs are resampled ({pairs})", True)


def _done_line(result: SeparatedFile) -> str:
    paths = [result.outputs[stem] for stem in result.written]
    folder = Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = ", ".join(str(p.relative_to(folder)) for p in paths)
    kept = [result.outputs[s].name for s in result.outputs if s not in result.written]
    return (f"{result.input} -> {folder}/ ({names}{'; kept ' + ', '.join(kept) if kept else ''}): "
            f"{format_seconds(result.duration)} of audio in {format_seconds(result.elapsed)} "
            f"({speed(result.duration, result.elapsed)})")


def _summary(result: BatchResult, count: int) -> str:
    line = f"{count} files: {len(result.done)} separated, {len(result.skipped)} skipped, {len(result.failed)} failed"
    if result.failed:
        line += f" ({'; '.join(str(error) for error in result.errors)})"
    if result.done:
        audio = sum(r.duration for r in result.done)
        elapsed = sum(r.elapsed for r in result.done)
        line += (f"; {format_seconds(audio)} of audio in {format_seconds(elapsed)}, real-time factor "
                 f"{elapsed / audio:.3f} ({speed(audio, elapsed)})")
    return line
