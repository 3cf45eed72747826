"""Audio files in and out: reading, writing, resampling and channel matching.

Files are read and written with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3); torchaudio is
used only for resampling, because torchaudio >= 2.9 cannot decode files without torchcodec.

Every waveform in the package is a float32 tensor of shape [channels, time] in [-1, 1]. Problems a
user can fix (a missing, empty, truncated or non-audio file, NaN samples, an unwritable folder) raise
:class:`~waveunet.errors.WaveUNetError` with one line naming the file.

Writes are atomic: the audio goes to a hidden temporary file in the destination folder and is moved
into place with :func:`os.replace`, so a crash never leaves a half-written file behind.
:class:`AtomicGroup` extends this to several files that must appear together (one per source).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .atomic import temporary_beside
from .errors import WaveUNetError

#: file formats we write, and the container name soundfile uses for each
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}

#: bits per sample -> libsndfile subtype, for the lossless formats (lossy ones ignore ``bits``)
_PCM_SUBTYPES = {
    "wav": {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"},
    "flac": {16: "PCM_16", 24: "PCM_24"},
}
_LOSSY_SUBTYPES = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file holds, read from its header."""

    sample_rate: int
    channels: int
    frames: int
    #: libsndfile's container name: WAV, FLAC, OGG, MP3, ...
    format: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


# --------------------------------------------------------------------------------------- reading


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channel count and length of an audio file, without decoding it.

    Raises WaveUNetError if the file is missing, is not audio, or its header shows it was cut short.
    """
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise WaveUNetError(f"{path}: not a readable audio file ({_reason(error)})") from None
    if _header_shows_truncation(info.extra_info):
        raise WaveUNetError(f"{path}: audio file is truncated (shorter than its header says)")
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames), format=info.format)


def read_audio(path: str | os.PathLike, start: int = 0, frames: int = -1) -> tuple[torch.Tensor, int]:
    """Decode ``frames`` samples per channel from ``start`` (all of the rest if ``frames`` < 0).

    Returns ``(audio, sample_rate)`` with ``audio`` a float32 tensor [channels, time]. Raises
    WaveUNetError if the file is missing, not audio, empty, truncated or corrupt, or holds NaN/Inf.
    """
    path = Path(path)
    info = audio_info(path)
    if info.frames == 0:
        raise WaveUNetError(f"{path}: audio file is empty (zero samples)")
    if not 0 <= start < info.frames:
        raise WaveUNetError(f"{path}: start sample {start} is outside the file's {info.frames} samples")
    expected = info.frames - start if frames < 0 else min(frames, info.frames - start)
    try:
        data, sample_rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise WaveUNetError(f"{path}: audio file is corrupt ({_reason(error)})") from None
    # Compressed formats report their length from the header; a cut-off stream decodes short. An MP3
    # without a Xing/LAME header has only an estimate (from its bit rate), good to about 1 % at a
    # constant bit rate (libsndfile reads no further than it, so such a VBR file decodes short).
    slack = int(0.02 * expected) if info.format == "MP3" else 0
    if len(data) < expected - slack:
        raise WaveUNetError(f"{path}: audio file is truncated ({len(data)} of {expected} samples decode)")
    if not np.isfinite(data).all():
        raise WaveUNetError(f"{path}: audio file contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)


def _header_shows_truncation(log: str) -> bool:
    # libsndfile notes a WAV data chunk longer than the file as "data : N (should be M)" and an
    # Ogg stream cut mid-page as a last page without the end-of-stream bit.
    return any(
        (line.startswith("data") and "should be" in line) or "lacks an end-of-stream" in line
        for line in log.splitlines()
    )


def _reason(error: Exception) -> str:
    # libsndfile messages span lines and repeat the path; keep the last meaningful line only.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else type(error).__name__


# ------------------------------------------------------------------------------ sample rate, channels


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling of [..., time] audio from ``orig_sr`` to ``new_sr`` Hz."""
    if orig_sr == new_sr:
        return audio
    import torchaudio.functional  # imported here: only callers that resample pay for torchaudio

    return torchaudio.functional.resample(audio, int(orig_sr), int(new_sr))


class StreamResampler:
    """:func:`resample` for a signal that arrives in consecutive blocks ``[..., n_i]``.

    The outputs of :meth:`push` and :meth:`flush`, concatenated, equal ``resample`` of the whole
    signal up to float rounding, while only one block (plus a few samples of filter margin) is held.
    torchaudio resamples by a polyphase filter with stride ``orig`` (the rates divided by their
    greatest common divisor): output ``k * new + p`` depends on the inputs within ``width`` of
    ``k * orig``. So each call resamples the pending samples together with ``margin`` samples of
    their neighbours on both sides, starting at a multiple of ``orig``, and emits only the outputs
    that the zero padding at the block's ends cannot reach.
    """

    def __init__(self, orig_sr: int, new_sr: int):
        self.orig_sr, self.new_sr = int(orig_sr), int(new_sr)
        gcd = math.gcd(self.orig_sr, self.new_sr)
        self.orig, self.new = self.orig_sr // gcd, self.new_sr // gcd
        # torchaudio's filter reaches ceil(6 * orig / (0.99 * min(orig, new))) inputs each way
        width = math.ceil(6 * self.orig / (0.99 * min(self.orig, self.new)))
        self.margin = self.orig * (width // self.orig + 2)
        self._buffer: torch.Tensor | None = None  # inputs from global index self._next - lead
        self._next = 0  # first input index (a multiple of orig) whose outputs are still to come
        self._received = 0

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Take the next ``[..., n]`` inputs; return the outputs that are now final."""
        if self.orig_sr == self.new_sr:
            return block
        self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], dim=-1)
        self._received += block.shape[-1]
        until = (self._received - self.margin) // self.orig * self.orig
        if until <= self._next:
            return block.new_zeros(*block.shape[:-1], 0)
        lead = self._lead()
        out = resample(self._buffer, self.orig, self.new)
        out = out[..., lead // self.orig * self.new : (until - self._next + lead) // self.orig * self.new]
        self._next = until
        self._buffer = self._buffer[..., self._buffer.shape[-1] - (self._received - until) - self._lead():]
        return out

    def flush(self) -> torch.Tensor:
        """The remaining outputs, treating the signal as ending here (zero-padded, as ``resample`` does)."""
        if self.orig_sr == self.new_sr or self._buffer is None:
            return torch.zeros(0) if self._buffer is None else self._buffer[..., :0]
        out = resample(self._buffer, self.orig, self.new)[..., self._lead() // self.orig * self.new :]
        self._buffer, self._next = self._buffer[..., :0], self._received
        return out

    def _lead(self) -> int:
        # context kept before the next pending input: none at the signal's start
        return min(self._next, self.margin)


def match_channels(audio: torch.Tensor, channels: int, downmix: bool = False, name: str = "audio") -> torch.Tensor:
    """Convert [C, time] audio to [channels, time].

    Mono becomes stereo by duplication and stereo becomes mono by averaging. Audio with more than two
    channels is refused (``name`` says which in the error) unless ``downmix`` is set, in which case it
    is averaged to mono first.
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    if have > 2:
        if not downmix:
            raise WaveUNetError(f"{name}: has {have} channels; only mono and stereo are supported (use downmix)")
        audio, have = audio.mean(dim=0, keepdim=True), 1
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if channels == 2 and have == 1:
        return audio.expand(2, -1).clone()
    if channels == have:
        return audio
    raise WaveUNetError(f"{name}: cannot convert {have} channels to {channels}")


# --------------------------------------------------------------------------------------- writing


def write_audio(
    path: str | os.PathLike,
    audio: torch.Tensor,
    sample_rate: int,
    format: str = "wav",
    bits: int = 16,
    overwrite: bool = False,
) -> Path:
    """Write [channels, time] (or mono [time]) audio atomically; returns the path written.

    ``format`` is one of wav/flac/ogg/mp3; ``bits`` (16, 24, or 32 = float for WAV) applies to the
    lossless formats. An existing file is kept unless ``overwrite`` is set.
    """
    path = Path(path)
    _check_destination(path, overwrite)
    temporary = _encode_to_temporary(path, audio, sample_rate, format, bits)
    try:
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise WaveUNetError(f"{path}: cannot write ({error.strerror})") from None
    return path


class AtomicGroup:
    """Write several audio files so that either all of them appear or none does.

    Each :meth:`write_audio` encodes to a temporary file beside its destination; leaving the ``with``
    block without an exception moves them all into place, an exception deletes them. Files the group
    overwrites are moved aside first and restored if any move fails::

        with AtomicGroup(overwrite=False) as group:
            for source, audio in estimates.items():
                group.write_audio(out / f"{source}.wav", audio, sample_rate)

    :meth:`open_stream` adds a file that is written block by block instead (a long song need not be
    held in memory); it is finished and moved into place with the others.
    """

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []  # (temporary, destination)
        self._streams: list[BlockWriter] = []  # files still being written block by block

    def write_audio(self, path, audio, sample_rate, format="wav", bits=16) -> Path:
        """Encode one file of the group (same arguments as :func:`write_audio`); returns its final path."""
        path = Path(path)
        if any(destination == path for _, destination in self._pending):
            raise WaveUNetError(f"{path}: written twice in one group")
        _check_destination(path, self.overwrite)
        self._pending.append((_encode_to_temporary(path, audio, sample_rate, format, bits), path))
        return path

    def open_stream(self, path, sample_rate, channels, format="wav", bits=16) -> BlockWriter:
        """Start one file of the group that is written block by block (``writer.write(block)``)."""
        path = Path(path)
        if any(destination == path for _, destination in self._pending):
            raise WaveUNetError(f"{path}: written twice in one group")
        _check_destination(path, self.overwrite)
        writer = BlockWriter(path, sample_rate, channels, format, bits)
        self._streams.append(writer)
        self._pending.append((writer.temporary, path))
        return writer

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        pending, self._pending = self._pending, []
        streams, self._streams = self._streams, []
        try:
            if exc_type is None:
                for writer in streams:
                    writer.close()
        except BaseException:
            _discard(streams, pending)
            raise
        if exc_type is not None:
            _discard(streams, pending)
            return
        self._commit(pending)

    def _commit(self, pending: list[tuple[Path, Path]]) -> None:
        # Check every destination again before touching any: a file may have appeared meanwhile.
        try:
            for _, destination in pending:
                _check_destination(destination, self.overwrite)
        except WaveUNetError:
            for temporary, _ in pending:
                temporary.unlink(missing_ok=True)
            raise
        placed: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
        try:
            for temporary, destination in pending:
                backup = None
                if destination.exists():
                    backup = destination.with_name(f".{destination.name}.{os.getpid()}.backup")
                    os.replace(destination, backup)
                placed.append((destination, backup))
                os.replace(temporary, destination)
        except OSError as error:
            failed = destination
            for moved, backup in reversed(placed):
                moved.unlink(missing_ok=True)
                if backup is not None:
                    os.replace(backup, moved)
            for temporary, _ in pending:
                temporary.unlink(missing_ok=True)
            raise WaveUNetError(f"{failed}: cannot write ({error.strerror}); no file of the group was written") from None
        for _, backup in placed:
            if backup is not None:
                backup.unlink(missing_ok=True)


def _discard(streams: list[BlockWriter], pending: list[tuple[Path, Path]]) -> None:
    for writer in streams:
        writer.discard()
    for temporary, _ in pending:
        temporary.unlink(missing_ok=True)


def _check_destination(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise WaveUNetError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    if path.is_dir():
        raise WaveUNetError(f"{path}: is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WaveUNetError(f"{folder}: output folder is not writable")


class BlockWriter:
    """An audio file encoded block by block into a hidden temporary file beside its destination.

    ``write`` appends ``[channels, n]`` blocks; ``close`` finishes the file, ``discard`` deletes it.
    Moving the temporary file into place is the caller's job (:class:`AtomicGroup` does it), so a
    long song can be written without ever holding all of it.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, format: str = "wav", bits: int = 16):
        self.path = path = Path(path)
        self.format = format = format.lower()
        if format not in FORMATS:
            raise WaveUNetError(f"{path}: unknown audio format {format!r} (choose from {', '.join(FORMATS)})")
        if format in _PCM_SUBTYPES:
            if bits not in _PCM_SUBTYPES[format]:
                raise WaveUNetError(f"{path}: {format} cannot be written with {bits} bits (choose from {sorted(_PCM_SUBTYPES[format])})")
            subtype = _PCM_SUBTYPES[format][bits]
        else:
            subtype = _LOSSY_SUBTYPES[format]
        try:
            self.temporary = temporary_beside(path, ".part")
        except OSError as error:
            raise WaveUNetError(f"{path.parent}: cannot write to output folder ({error.strerror})") from None
        try:
            self._file = sf.SoundFile(str(self.temporary), "w", samplerate=int(sample_rate), channels=int(channels),
                                      subtype=subtype, format=FORMATS[format])
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            self.temporary.unlink(missing_ok=True)
            raise WaveUNetError(f"{path}: cannot encode audio as {format} ({_reason(error)})") from None

    def write(self, audio: torch.Tensor) -> None:
        """Append ``[channels, n]`` samples."""
        samples = audio.detach().to("cpu", torch.float32)
        if not torch.isfinite(samples).all():
            raise WaveUNetError(f"{self.path}: refusing to write audio containing NaN or infinite samples")
        try:
            self._file.write(samples.T.numpy())
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            raise WaveUNetError(f"{self.path}: cannot encode audio as {self.format} ({_reason(error)})") from None

    def close(self) -> Path:
        """Finish the temporary file and return its path."""
        if not self._file.closed:
            try:
                self._file.close()
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                raise WaveUNetError(f"{self.path}: cannot finish writing ({_reason(error)})") from None
        return self.temporary

    def discard(self) -> None:
        """Close and delete the temporary file."""
        try:
            self._file.close()
        except Exception:  # the file goes away anyway; the original error matters more
            pass
        self.temporary.unlink(missing_ok=True)


def _encode_to_temporary(path: Path, audio: torch.Tensor, sample_rate: int, format: str, bits: int) -> Path:
    """Encode ``audio`` into a hidden temporary file in ``path``'s folder and return its path."""
    samples = audio.detach()
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise WaveUNetError(f"{path}: expected audio shaped [channels, time], got {tuple(audio.shape)}")
    if not torch.isfinite(samples).all():
        raise WaveUNetError(f"{path}: refusing to write audio containing NaN or infinite samples")
    writer = BlockWriter(path, sample_rate, samples.shape[0], format, bits)
    try:
        writer.write(samples)
        return writer.close()
    except BaseException:
        writer.discard()
        raise
