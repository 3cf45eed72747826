"""The decoded cache: every track of a collection decoded once, at the model's rate and channels.

Decoding AAC/MP3 and resampling on every training step would starve the model, so
:func:`open_cache` decodes each track once (with a progress bar) into one ``.npy`` file of shape
[stems, channels, time], row 0 the mixture and then the sources, and reads excerpts from
memory-mapped views of those files: an excerpt costs a few page reads, whatever the codec.

Samples are stored as 16-bit integers, the precision of MUSDB18's own files, scaled per track by
``max(1, peak)`` so that resampling overshoot does not clip. The mixture is the collection's own
mixture, or the sum of the sources when it has none.

The cache folder is named after the collection and keyed by a hash of the collection's
:meth:`~waveunet.data.tracks.TrackCollection.identity` (location, options, and the size and
modification time of every file), the sample rate and the channel count: a change to any of them
builds a new cache and deletes the stale one of the same collection. A cache is built in a hidden
folder and renamed into place when complete, so an interrupted build leaves nothing behind and
concurrent builders (several ranks of one job) cannot corrupt each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio import match_channels, resample
from ..errors import WaveUNetError
from .targets import MIXTURE, sum_of
from .tracks import TrackCollection

#: bump when the on-disk layout changes, so old caches are rebuilt rather than misread
CACHE_VERSION = 1
MANIFEST = "manifest.json"
_FULL_SCALE = 32767


def default_cache_dir() -> Path:
    """``$WAVEUNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/waveunet/data``, else ``~/.cache/waveunet/data``."""
    if os.environ.get("WAVEUNET_CACHE_DIR"):
        return Path(os.environ["WAVEUNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "waveunet" / "data"


@dataclass(frozen=True)
class CachedTrack:
    """One track in the cache: ``file`` holds int16 [len(stems), channels, frames], times ``scale``."""

    name: str
    file: str
    frames: int
    scale: float


class DecodedCache:
    """Memory-mapped, decoded tracks of one collection at one sample rate and channel count.

    Safe to hand to DataLoader workers: the memory maps are opened lazily in each process and are
    not pickled.
    """

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.description: str = manifest["description"]
        self.sample_rate: int = manifest["sample_rate"]
        self.channels: int = manifest["channels"]
        self.sources: tuple[str, ...] = tuple(manifest["sources"])
        self.stems: tuple[str, ...] = (MIXTURE, *self.sources)
        self.tracks = [CachedTrack(**track) for track in manifest["tracks"]]
        self._maps: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.tracks)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def window(self, track: int, start: int, length: int, stems: tuple[str, ...] | None = None) -> torch.Tensor:
        """Samples ``start .. start + length`` of ``stems`` (default all) of one track.

        Returns float32 [len(stems), channels, length]. The window may reach past either end of the
        track; those samples are zero (silence before and after the song), the rest is real signal.
        """
        stems = self.stems if stems is None else stems
        rows = [self.stems.index(stem) for stem in stems]
        if rows == list(range(rows[0], rows[0] + len(rows))):
            rows = slice(rows[0], rows[0] + len(rows))  # a slice reads the map in place, a list gathers a copy
        out = torch.zeros(len(stems), self.channels, length)
        first, last = self._overlap(track, start, length)
        if first < last:
            # int16 -> scaled float32 in one pass, straight from the memory map into ``out``
            torch.mul(self._samples(track)[rows, :, first:last], self._unit(track), out=out[:, :, first - start : last - start])
        return out

    def mix(self, parts: list[tuple[int, str, int, float]], length: int) -> torch.Tensor:
        """The weighted sum of stem windows, [channels, length].

        ``parts`` lists ``(track, stem, start, weight)``; each window is read as in :meth:`window` and
        accumulated in one pass, without materialising the individual stems.
        """
        out = torch.zeros(self.channels, length)
        for track, stem, start, weight in parts:
            first, last = self._overlap(track, start, length)
            if first < last:
                samples = self._samples(track)[self.stems.index(stem), :, first:last]
                out[:, first - start : last - start].add_(samples, alpha=weight * self._unit(track))
        return out

    def _overlap(self, track: int, start: int, length: int) -> tuple[int, int]:
        """The part ``first .. last`` of the window that lies inside the track."""
        return max(start, 0), min(start + length, self.tracks[track].frames)

    def _unit(self, track: int) -> float:
        """The value of one int16 step of ``track``."""
        return self.tracks[track].scale / _FULL_SCALE

    def _samples(self, track: int) -> torch.Tensor:
        """The track's int16 samples [stems, channels, frames], memory-mapped on first use."""
        if track not in self._maps:
            # Copy-on-write mapping: the file is opened read-only, but torch gets a writable array.
            self._maps[track] = torch.from_numpy(np.load(self.folder / self.tracks[track].file, mmap_mode="c"))
        return self._maps[track]


def open_cache(
    collection: TrackCollection,
    sample_rate: int,
    channels: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> DecodedCache:
    """The decoded cache of ``collection`` at ``sample_rate`` Hz and ``channels`` channels.

    Built on first use (decoding every track, with a tqdm progress bar unless ``progress`` is
    False) under ``cache_dir`` (default :func:`default_cache_dir`), reused afterwards.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(collection, sample_rate, channels)
    prefix = f"{collection.slug}-{sample_rate}hz-{channels}ch-"
    folder = root / f"{prefix}{key[:16]}"
    manifest = _read_manifest(folder, key)
    if manifest is None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WaveUNetError(f"{root}: cannot create the data cache folder ({error.strerror})") from None
        manifest = _build(collection, sample_rate, channels, key, folder, progress)
        _remove_stale(root, prefix, keep=folder)
    return DecodedCache(folder, manifest)


def cache_key(collection: TrackCollection, sample_rate: int, channels: int) -> str:
    """Hex digest of everything the cached samples depend on."""
    identity = {
        "version": CACHE_VERSION,
        "collection": collection.identity(),
        "sample_rate": int(sample_rate),
        "channels": int(channels),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _read_manifest(folder: Path, key: str) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("key") == key else None


def _build(collection, sample_rate, channels, key, folder: Path, progress: bool) -> dict:
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".building", dir=folder.parent))
    try:
        tracks = []
        names = collection.track_names
        bar = tqdm(range(len(names)), desc=f"Caching {collection.description} at {sample_rate} Hz", unit="track", disable=not progress)
        for index in bar:
            stems = decode_track(collection, index, sample_rate, channels)
            scale = max(1.0, float(stems.abs().max()))
            file = f"{index:05d}.npy"
            np.save(building / file, np.round(stems.numpy() * (_FULL_SCALE / scale)).astype(np.int16))
            tracks.append({"name": names[index], "file": file, "frames": stems.shape[-1], "scale": scale})
        manifest = {
            "key": key,
            "description": collection.description,
            "sample_rate": int(sample_rate),
            "channels": int(channels),
            "sources": list(collection.sources),
            "tracks": tracks,
        }
        (building / MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(building, folder)
        except OSError:
            # Another process finished the same cache first; use theirs.
            if _read_manifest(folder, key) is None:
                raise
        return _read_manifest(folder, key) or manifest
    finally:
        shutil.rmtree(building, ignore_errors=True)


def decode_track(collection: TrackCollection, index: int, sample_rate: int, channels: int) -> torch.Tensor:
    """Track ``index`` as float32 [1 + sources, channels, time] at ``sample_rate``: mixture first.

    Each stem is resampled and channel-matched on its own; stems are cut to the shortest (codec
    padding). Without a mixture stem the mixture is the sum of the sources.
    """
    decoded = collection.load(index)
    waveforms = {
        name: match_channels(resample(audio, decoded.sample_rates[name], sample_rate), channels, name=str(decoded.files[name]))
        for name, audio in decoded.waveforms.items()
    }
    frames = min(audio.shape[-1] for audio in waveforms.values())
    sources = [waveforms[name][:, :frames] for name in collection.sources]
    mixture = waveforms[MIXTURE][:, :frames] if MIXTURE in waveforms else sum_of(sources)
    return torch.stack([mixture, *sources])


def _remove_stale(root: Path, prefix: str, keep: Path) -> None:
    # Same collection, rate and channels but older content: nothing can use it any more.
    for folder in root.glob(f"{prefix}*"):
        if folder != keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
