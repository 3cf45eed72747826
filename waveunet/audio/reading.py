"""Reading audio files with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3).

torchaudio >= 2.9 cannot decode files without torchcodec, so files are read with soundfile. A
waveform is a float32 tensor ``[channels, time]`` in [-1, 1]. Problems a user can fix (a missing,
empty, truncated or non-audio file, NaN samples) raise :class:`~waveunet.errors.WaveUNetError`
with one line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..errors import WaveUNetError


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
        raise WaveUNetError(f"{path}: not a readable audio file ({libsndfile_reason(error)})") from None
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
        raise WaveUNetError(f"{path}: audio file is corrupt ({libsndfile_reason(error)})") from None
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


def libsndfile_reason(error: Exception) -> str:
    # libsndfile messages span lines and repeat the path; keep the last meaningful line only.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else type(error).__name__
