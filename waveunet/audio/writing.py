"""Writing audio files with soundfile: whole signals, or block by block, always atomically.

A file is encoded into a hidden temporary file beside its destination and renamed into place when
complete (:mod:`waveunet.atomic`), so a crash never leaves a half-written file behind; the stems
of one song go through one :class:`~waveunet.atomic.AtomicGroup` and appear together.

Formats: WAV and FLAC (16 or 24 bits; WAV also 32-bit float), and the lossy MP3, Ogg/Vorbis and
Ogg/Opus, all encoded by libsndfile. What each can hold is :data:`CAPACITY`; the rate a format gets
is :func:`output_rate` (the input's wherever the format takes it). ``quality`` (0-10, 10 best) of
the lossy formats is libsndfile's compression level ``1 - quality / 10``.

Clipping: every sample beyond [-1, 1] is clipped to -1 or 1 before encoding, for every format and
bit depth, the float WAV included (PCM would otherwise wrap around); the writer counts them
(:attr:`BlockWriter.clipped`) so that callers can say so.

The encoder writes through a Python file object (soundfile's virtual I/O), so that the operating
system's reason for a failed write reaches the user: a full disk is a
:class:`~waveunet.atomic.NoSpaceError`, not libsndfile's "System error".
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from ..atomic import NO_SPACE, AtomicGroup, NoSpaceError, check_destination, signals_held
from ..errors import WaveUNetError
from ..progress import format_bytes
from .reading import libsndfile_reason

#: file formats we write, and the container name soundfile uses for each
FORMATS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "OGG", "opus": "OGG"}
#: the formats that keep every sample (the others take ``quality``)
LOSSLESS = ("wav", "flac")

#: bits per sample -> libsndfile subtype, for the lossless formats (lossy ones ignore ``bits``)
_PCM_SUBTYPES = {
    "wav": {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"},
    "flac": {16: "PCM_16", 24: "PCM_24"},
}
_LOSSY_SUBTYPES = {"mp3": "MPEG_LAYER_III", "ogg": "VORBIS", "opus": "OPUS"}
#: LAME's VBR quality scale, which libsndfile fills with 10 x the level, stops short of 10
_MP3_MAX_LEVEL = 0.999


@dataclass(frozen=True)
class Capacity:
    """What a format can hold (as libsndfile writes it)."""

    channels: int
    #: the only sample rates it takes (empty: any up to ``max_rate``)
    rates: tuple[int, ...] = ()
    max_rate: int | None = None
    #: the largest file (WAV's sizes are 32-bit)
    max_bytes: int | None = None


CAPACITY = {
    "wav": Capacity(channels=1024, max_bytes=2**32 - 1),
    "flac": Capacity(channels=8, max_rate=655350),
    "mp3": Capacity(channels=2, rates=(8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ogg": Capacity(channels=255),  # libvorbis crashes on more
    "opus": Capacity(channels=255, rates=(8000, 12000, 16000, 24000, 48000)),
}
#: Opus codes at 48 kHz inside; a rate it does not take goes there
OPUS_RATE = 48000


def check_format(format: str, bits: int = 16, quality: float | None = None) -> None:
    """:class:`WaveUNetError` unless ``format`` is one we write, with ``bits`` and ``quality`` that fit it."""
    if format not in FORMATS:
        raise WaveUNetError(f"unknown audio format {format!r} (choose from {', '.join(FORMATS)})")
    if format in _PCM_SUBTYPES and bits not in _PCM_SUBTYPES[format]:
        raise WaveUNetError(f"--bits {bits}: {format} is written with {' or '.join(map(str, _PCM_SUBTYPES[format]))} bits"
                            + ("; use --bits 24 or --format wav" if format == "flac" and bits == 32 else ""))
    if quality is not None:
        if format in LOSSLESS:
            raise WaveUNetError(f"--quality: {format} is lossless; --quality applies to mp3, ogg and opus")
        if not 0 <= quality <= 10:
            raise WaveUNetError(f"--quality {quality:g}: choose from 0 (smallest) to 10 (best)")


def subtype(format: str, bits: int, name: str | os.PathLike = "audio") -> str:
    """libsndfile's subtype for ``format`` at ``bits`` bits (lossy formats ignore ``bits``)."""
    if format not in FORMATS:
        raise WaveUNetError(f"{name}: unknown audio format {format!r} (choose from {', '.join(FORMATS)})")
    if format in _PCM_SUBTYPES:
        if bits not in _PCM_SUBTYPES[format]:
            raise WaveUNetError(f"{name}: {format} cannot be written with {bits} bits "
                                f"(choose from {sorted(_PCM_SUBTYPES[format])})")
        return _PCM_SUBTYPES[format][bits]
    return _LOSSY_SUBTYPES[format]


def compression_level(format: str, quality: float | None) -> float | None:
    """libsndfile's compression level (0: best quality, 1: smallest) for ``quality`` 0-10; None: libsndfile's default.

    >>> compression_level("ogg", 10), compression_level("ogg", 3), compression_level("mp3", 0)
    (0.0, 0.7, 0.999)
    """
    if quality is None or format in LOSSLESS:
        return None
    level = round(1 - quality / 10, 6)
    return min(level, _MP3_MAX_LEVEL) if format == "mp3" else level


def output_rate(format: str, sample_rate: int) -> int:
    """The rate ``format`` is written at: the input's wherever the format takes it.

    Opus takes 8/12/16/24/48 kHz and gets 48 kHz otherwise; MP3 (MPEG-1/2/2.5 rates) gets the
    lowest rate it takes that keeps the input's band, or 48 kHz above that.

    >>> output_rate("wav", 44100), output_rate("opus", 44100), output_rate("opus", 16000), output_rate("mp3", 96000)
    (44100, 48000, 16000, 48000)
    """
    rates = CAPACITY[format].rates
    if not rates or sample_rate in rates:
        return sample_rate
    if format == "opus":
        return OPUS_RATE
    return min((rate for rate in rates if rate >= sample_rate), default=max(rates))


def resampled_length(frames: int, orig_sr: int, new_sr: int) -> int:
    """Samples of a ``frames``-sample signal resampled from ``orig_sr`` to ``new_sr`` (torchaudio's ceil).

    >>> resampled_length(44100, 44100, 48000), resampled_length(7, 44100, 48000)
    (48000, 8)
    """
    return -(-frames * new_sr // orig_sr)


def encoded_bytes(format: str, bits: int, frames: int, channels: int) -> int | None:
    """The exact size of a ``format`` file of ``frames`` samples per channel, where it is known (WAV), else None.

    libsndfile's WAV header is 44 bytes for PCM (plus a pad byte after odd-sized data) and
    72 + 8 x channels for float (a ``fact`` and a ``PEAK`` chunk).
    """
    if format != "wav":
        return None
    data = frames * channels * (bits // 8)
    return data + (72 + 8 * channels if bits == 32 else 44 + data % 2)


def check_capacity(format: str, bits: int, channels: int, sample_rate: int | None = None, frames: int = 0,
                   name: str | os.PathLike = "audio") -> None:
    """:class:`WaveUNetError` (naming ``name``) if a ``format`` file cannot hold this audio.

    ``sample_rate`` is the rate it would be written at (:func:`output_rate`); None, and ``frames``
    0, check the channels alone.
    """
    capacity = CAPACITY[format]
    if channels > capacity.channels:
        raise WaveUNetError(f"{name}: {format} holds at most {capacity.channels} channel(s), the outputs have {channels}")
    if capacity.max_rate is not None and sample_rate is not None and sample_rate > capacity.max_rate:
        raise WaveUNetError(f"{name}: {format} holds at most {capacity.max_rate} Hz, the outputs are at {sample_rate} Hz")
    size = encoded_bytes(format, bits, frames, channels)
    if capacity.max_bytes is not None and size is not None and size > capacity.max_bytes:
        raise WaveUNetError(f"{name}: each output would be {format_bytes(size)}, more than a {format} file holds "
                            f"({format_bytes(capacity.max_bytes)}); use --format flac")


class _ReportingFile(io.RawIOBase):
    """The file libsndfile writes through (virtual I/O): keeps the operating system's error.

    libsndfile turns a failed write into "System error."; this object records the ``OSError``
    (``error``) and reports a short write, which soundfile then raises on.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._file = io.FileIO(path, "w+")
        self.error: OSError | None = None

    def write(self, data) -> int:
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                done += self._file.write(view[done:])
        except OSError as error:
            self.error = self.error or error
        return done

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as error:
                self.error = self.error or error
        super().close()


#: what soundfile raises when libsndfile fails (a short write of virtual I/O is an AssertionError)
_ENCODER_ERRORS = (sf.LibsndfileError, RuntimeError, OSError, ValueError, AssertionError)


class BlockWriter:
    """An audio file encoded block by block into ``file`` (a temporary file; ``name`` is what errors call it).

    ``write`` appends ``[channels, n]`` blocks, clipped to [-1, 1]; ``close`` finishes the file,
    ``discard`` closes and deletes it. :func:`open_stream` puts one into an
    :class:`~waveunet.atomic.AtomicGroup`. ``frames``, ``clipped`` (samples clipped) and
    ``bytes`` (written so far) tell how it went.
    """

    def __init__(self, file: str | os.PathLike, sample_rate: int, channels: int, format: str = "wav", bits: int = 16,
                 name: str | os.PathLike | None = None, quality: float | None = None):
        self.file, self.name = Path(file), Path(name or file)
        self.format = format = format.lower()
        kind = subtype(format, bits, self.name)
        check_format(format, bits, quality)
        self.frames = self.clipped = self._size = 0
        self._io = _ReportingFile(self.file)
        try:
            with signals_held():
                self._file = sf.SoundFile(self._io, "w", samplerate=int(sample_rate), channels=int(channels),
                                          subtype=kind, format=FORMATS[format],
                                          compression_level=compression_level(format, quality))
        except _ENCODER_ERRORS as error:
            self._io.close()
            self._fail(error, "encode")

    @property
    def bytes(self) -> int:
        """Bytes written to the file so far (what it had when closed, after that)."""
        self._keep_size()
        return self._size

    def _keep_size(self) -> None:
        # after a failure the file is gone, but its size tells what the whole one would have needed
        if not self._io.closed:
            self._size = self._io.size()

    def write(self, audio: torch.Tensor) -> None:
        """Append ``[channels, n]`` samples (clipped to [-1, 1])."""
        samples = audio.detach().to("cpu", torch.float32)
        if samples.shape[-1] == 0:
            return
        if not torch.isfinite(samples).all():
            raise WaveUNetError(f"{self.name}: refusing to write audio containing NaN or infinite samples")
        beyond = int((samples.abs() > 1).sum())
        if beyond:
            self.clipped += beyond
            samples = samples.clamp(-1.0, 1.0)
        try:
            with signals_held():
                self._file.write(samples.T.numpy())
        except _ENCODER_ERRORS as error:
            self._fail(error, "encode")
        self.frames += samples.shape[-1]

    def close(self) -> None:
        """Finish the file."""
        if not self._file.closed:
            try:
                with signals_held():
                    self._file.close()
            except _ENCODER_ERRORS as error:
                self._fail(error, "finish")
        self._keep_size()
        self._io.close()
        if self._io.error is not None:  # the last bytes (the header) may have failed only now
            self._fail(self._io.error, "finish")

    def discard(self) -> None:
        """Close and delete the file."""
        try:
            with signals_held():
                self._file.close()
        except Exception:  # the file goes away anyway; the original error matters more
            pass
        self._keep_size()
        self._io.close()
        self.file.unlink(missing_ok=True)

    def _fail(self, error: Exception, doing: str):
        cause = self._io.error
        if cause is not None and cause.errno in NO_SPACE:
            raise NoSpaceError(self.name.parent) from None
        if cause is not None:
            raise WaveUNetError(f"{self.name}: cannot write ({cause.strerror})") from None
        raise WaveUNetError(f"{self.name}: cannot {doing} audio as {self.format} ({libsndfile_reason(error)})") from None


def open_stream(group: AtomicGroup, path: str | os.PathLike, sample_rate: int, channels: int, format: str = "wav",
                bits: int = 16, quality: float | None = None) -> BlockWriter:
    """A :class:`BlockWriter` for ``path`` in ``group``: it appears with the group's other files."""
    return group.add(path, opener=lambda temporary: BlockWriter(temporary, sample_rate, channels, format, bits,
                                                                name=path, quality=quality))


def write_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, format: str = "wav", bits: int = 16,
                force: bool = False, quality: float | None = None) -> Path:
    """Write ``[channels, time]`` (or mono ``[time]``) audio to ``path`` atomically; returns the path.

    ``format`` is one of :data:`FORMATS`; ``bits`` (16, 24, or 32 = float for WAV) applies to the
    lossless formats, ``quality`` (0-10) to the lossy ones. Samples beyond [-1, 1] are clipped. An
    existing file is kept unless ``force``.
    """
    path = Path(path)
    samples = audio.detach()
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise WaveUNetError(f"{path}: expected audio shaped [channels, time], got {tuple(audio.shape)}")
    check_destination(path, force)
    with AtomicGroup(force=force) as group:
        open_stream(group, path, sample_rate, samples.shape[0], format, bits, quality).write(samples)
    return path
