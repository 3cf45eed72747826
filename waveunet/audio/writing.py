"""Writing audio files with soundfile: whole signals, or block by block, always atomically.

A file is encoded into a hidden temporary file beside its destination and renamed into place when
complete (:mod:`waveunet.atomic`), so a crash never leaves a half-written file behind; the stems
of one song go through one :class:`~waveunet.atomic.AtomicGroup` and appear together.
"""

from __future__ import annotations

import os
from pathlib import Path

import soundfile as sf
import torch

from ..atomic import AtomicGroup, check_destination
from ..errors import WaveUNetError
from .reading import libsndfile_reason

#: file formats we write, and the container name soundfile uses for each
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}

#: bits per sample -> libsndfile subtype, for the lossless formats (lossy ones ignore ``bits``)
_PCM_SUBTYPES = {
    "wav": {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"},
    "flac": {16: "PCM_16", 24: "PCM_24"},
}
_LOSSY_SUBTYPES = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


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


class BlockWriter:
    """An audio file encoded block by block into ``file`` (a temporary file; ``name`` is what errors call it).

    ``write`` appends ``[channels, n]`` blocks; ``close`` finishes the file, ``discard`` closes and
    deletes it. :func:`open_stream` puts one into an :class:`~waveunet.atomic.AtomicGroup`.
    """

    def __init__(self, file: str | os.PathLike, sample_rate: int, channels: int, format: str = "wav", bits: int = 16,
                 name: str | os.PathLike | None = None):
        self.file, self.name = Path(file), Path(name or file)
        self.format = format = format.lower()
        kind = subtype(format, bits, self.name)
        try:
            self._file = sf.SoundFile(str(self.file), "w", samplerate=int(sample_rate), channels=int(channels),
                                      subtype=kind, format=FORMATS[format])
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            raise WaveUNetError(f"{self.name}: cannot encode audio as {format} ({libsndfile_reason(error)})") from None

    def write(self, audio: torch.Tensor) -> None:
        """Append ``[channels, n]`` samples."""
        samples = audio.detach().to("cpu", torch.float32)
        if not torch.isfinite(samples).all():
            raise WaveUNetError(f"{self.name}: refusing to write audio containing NaN or infinite samples")
        try:
            self._file.write(samples.T.numpy())
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            raise WaveUNetError(f"{self.name}: cannot encode audio as {self.format} ({libsndfile_reason(error)})") from None

    def close(self) -> None:
        """Finish the file."""
        if not self._file.closed:
            try:
                self._file.close()
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                raise WaveUNetError(f"{self.name}: cannot finish writing ({libsndfile_reason(error)})") from None

    def discard(self) -> None:
        """Close and delete the file."""
        try:
            self._file.close()
        except Exception:  # the file goes away anyway; the original error matters more
            pass
        self.file.unlink(missing_ok=True)


def open_stream(group: AtomicGroup, path: str | os.PathLike, sample_rate: int, channels: int, format: str = "wav",
                bits: int = 16) -> BlockWriter:
    """A :class:`BlockWriter` for ``path`` in ``group``: it appears with the group's other files."""
    return group.add(path, opener=lambda temporary: BlockWriter(temporary, sample_rate, channels, format, bits, name=path))


def write_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, format: str = "wav", bits: int = 16,
                force: bool = False) -> Path:
    """Write ``[channels, time]`` (or mono ``[time]``) audio to ``path`` atomically; returns the path.

    ``format`` is one of wav/flac/ogg/mp3; ``bits`` (16, 24, or 32 = float for WAV) applies to the
    lossless formats. An existing file is kept unless ``force``.
    """
    path = Path(path)
    samples = audio.detach()
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise WaveUNetError(f"{path}: expected audio shaped [channels, time], got {tuple(audio.shape)}")
    check_destination(path, force)
    with AtomicGroup(force=force) as group:
        open_stream(group, path, sample_rate, samples.shape[0], format, bits).write(samples)
    return path
