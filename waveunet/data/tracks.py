"""Multitrack collections: where the stems of each track live and how to decode them.

A collection (:class:`~waveunet.data.musdb18.MUSDB18`, :class:`~waveunet.data.folders.TrackFolder`)
lists its tracks and decodes one track at a time into :class:`Stems`. Decoding is slow (MP3/AAC,
resampling), so training never reads a collection directly: :mod:`waveunet.data.cache` decodes
every track once and serves excerpts from memory-mapped arrays. A collection's :meth:`identity`
(its location, options and the size and modification time of every file) keys that cache, so
editing the dataset rebuilds it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Stems:
    """One decoded track: ``waveforms[name]`` is [channels, time] at ``sample_rates[name]`` Hz.

    ``waveforms`` holds the sources and, when the collection has one, the ``mixture``. ``files``
    names the file each stem came from, for error messages.
    """

    waveforms: dict[str, torch.Tensor]
    sample_rates: dict[str, int]
    files: dict[str, Path]


class TrackCollection(ABC):
    """A list of multitrack songs that share one set of source names."""

    #: short text for progress bars and errors, e.g. ``MUSDB18-HQ train (valid split) at /data/musdb``
    description: str
    #: a file-system-safe name used for the cache folder
    slug: str

    @property
    @abstractmethod
    def sources(self) -> tuple[str, ...]:
        """The source names every track has (the mixture excluded)."""

    @property
    @abstractmethod
    def track_names(self) -> list[str]:
        """Names of the tracks, in a fixed order."""

    @abstractmethod
    def load(self, index: int) -> Stems:
        """Decode track ``index`` at its native sample rate."""

    @abstractmethod
    def identity(self) -> dict:
        """A JSON-serialisable description that changes whenever the decoded audio could."""

    def subset_of(self, index: int) -> str | None:
        """The MUSDB18 subset (``train``/``test``) holding track ``index``, where the collection
        has subsets (museval files a track's scores under it); None otherwise."""
        return None

    def __len__(self) -> int:
        return len(self.track_names)


def file_fingerprint(path: Path, root: Path) -> list:
    """``[path relative to root, size, mtime_ns]``: cheap evidence that a file has not changed."""
    status = os.stat(path)
    return [str(path.relative_to(root)), status.st_size, status.st_mtime_ns]
