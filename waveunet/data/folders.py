"""Users' own multitracks: one folder per track holding ``<source>.<ext>`` files.

::

    my-songs/
        song-a/  vocals.wav  drums.flac  bass.mp3  other.ogg  [mixture.wav]
        song-b/  vocals.wav  drums.flac  bass.mp3  other.ogg

Every file name (without extension) is a source, except ``mixture``, which is optional: without it
the mixture is the sum of the sources, so the sources must add up to the whole song. Every track must
have the same sources. Stems may differ in sample rate and channel count (they are resampled and
matched when cached); lossy codecs may pad a stem by a few milliseconds, so stems are cut to the
shortest one, but stems that differ by more than :data:`LENGTH_TOLERANCE` seconds are refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..audio import audio_info, read_audio
from ..errors import WaveUNetError
from .targets import MIXTURE
from .tracks import Stems, TrackCollection, file_fingerprint

EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
#: largest length difference (seconds) between the stems of one track that is put down to codec padding
LENGTH_TOLERANCE = 0.1


class TrackFolder(TrackCollection):
    """Every sub-folder of ``root`` that holds audio files is a track."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise WaveUNetError(f"{self.root}: track folder not found")
        self._tracks = self._scan()
        if not self._tracks:
            raise WaveUNetError(f"{self.root}: no track folders with {'/'.join(EXTENSIONS)} files inside")
        self._sources = self._common_sources()
        self.description = f"track folder {self.root}"
        location = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]
        self.slug = f"folder-{self.root.resolve().name or 'root'}-{location}"

    def _scan(self) -> list[tuple[str, dict[str, Path]]]:
        tracks = []
        for folder in sorted(path for path in self.root.iterdir() if path.is_dir()):
            stems: dict[str, Path] = {}
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() not in EXTENSIONS or file.name.startswith("."):
                    continue
                name = file.name[: -len(file.suffix)].lower()
                if name in stems:
                    raise WaveUNetError(f"{folder}: two files for source {name!r} ({stems[name].name}, {file.name})")
                audio_info(file)  # a broken file fails now, not half-way through a long cache build
                stems[name] = file
            if stems:
                tracks.append((folder.name, stems))
        return tracks

    def _common_sources(self) -> tuple[str, ...]:
        first_name, first = self._tracks[0]
        sources = tuple(sorted(name for name in first if name != MIXTURE))
        if not sources:
            raise WaveUNetError(f"{self.root / first_name}: track has a mixture but no source files")
        for name, stems in self._tracks[1:]:
            theirs = tuple(sorted(stem for stem in stems if stem != MIXTURE))
            for source in sources:
                if source not in theirs:
                    raise WaveUNetError(f"{self.root / name}: no {source} file (track {first_name!r} has one)")
            for source in theirs:
                if source not in sources:
                    raise WaveUNetError(f"{self.root / first_name}: no {source} file (track {name!r} has one)")
        return sources

    @property
    def sources(self) -> tuple[str, ...]:
        return self._sources

    @property
    def track_names(self) -> list[str]:
        return [name for name, _ in self._tracks]

    def load(self, index: int) -> Stems:
        _, files = self._tracks[index]
        waveforms, sample_rates = {}, {}
        for name, file in files.items():
            waveforms[name], sample_rates[name] = read_audio(file)
        durations = {name: waveforms[name].shape[-1] / sample_rates[name] for name in files}
        shortest, longest = min(durations, key=durations.get), max(durations, key=durations.get)
        if durations[longest] - durations[shortest] > LENGTH_TOLERANCE:
            raise WaveUNetError(
                f"{files[longest]}: {durations[longest]:.2f} s long but {files[shortest].name} is "
                f"{durations[shortest]:.2f} s; the stems of a track must have the same length"
            )
        return Stems(waveforms, sample_rates, dict(files))

    def identity(self) -> dict:
        return {
            "collection": "folder",
            "root": str(self.root.resolve()),
            "tracks": [[name, *(file_fingerprint(file, self.root) for file in files.values())] for name, files in self._tracks],
        }

