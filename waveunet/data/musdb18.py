"""MUSDB18 (Rafii et al., 2017) through the ``musdb`` package.

Two layouts: the compressed release, one Native Instruments ``.stem.mp4`` per track (AAC streams:
mixture, drums, bass, other, vocals; decoding needs ``ffmpeg``), and MUSDB18-HQ (``is_wav``), one
folder per track of 16-bit WAV files. Both have subsets ``train`` (100 tracks) and ``test`` (50);
musdb's official split divides ``train`` into 86 ``train`` and 14 ``valid`` tracks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..errors import WaveUNetError
from .targets import MIXTURE, MUSDB_SOURCES
from .tracks import Stems, TrackCollection, file_fingerprint

SUBSETS = ("train", "test")
#: musdb's split of the train subset; ``None`` keeps the whole subset
SPLITS = ("train", "valid", None)


class MUSDB18(TrackCollection):
    """The tracks of one MUSDB18 subset (and split) under ``root``.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        subset: ``train`` or ``test``.
        split: ``train`` or ``valid`` (musdb's split of the train subset), or None for all tracks.
        is_wav: MUSDB18-HQ (WAV folders) instead of the ``.stem.mp4`` release.
    """

    def __init__(self, root: str | Path, subset: str = "train", split: str | None = None, is_wav: bool = False):
        import musdb  # imported here: it pulls in stempeg, which only MUSDB users need

        self.root = Path(root)
        if subset not in SUBSETS:
            raise WaveUNetError(f"{root}: unknown MUSDB18 subset {subset!r} (choose from {', '.join(SUBSETS)})")
        if split not in SPLITS:
            raise WaveUNetError(f"{root}: unknown MUSDB18 split {split!r} (choose train, valid, or none)")
        if split is not None and subset != "train":
            raise WaveUNetError(f"{root}: musdb's train/valid split divides the train subset, not {subset!r}")
        if not (self.root / subset).is_dir():
            raise WaveUNetError(f"{self.root / subset}: MUSDB18 folder not found")
        self.subset, self.split, self.is_wav = subset, split, is_wav
        self._db = musdb.DB(root=str(self.root), is_wav=is_wav, subsets=subset, split=split, download=False)
        self._tracks = sorted(self._db.tracks, key=lambda track: track.name)
        release = "MUSDB18-HQ" if is_wav else "MUSDB18"
        where = f"{subset}" + (f" ({split} split)" if split else "")
        if not self._tracks:
            layout = "track folders of WAV files" if is_wav else ".stem.mp4 files"
            raise WaveUNetError(f"{self.root / subset}: no {release} tracks ({layout}) for {where}")
        self.description = f"{release} {where} at {self.root}"
        location = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]
        self.slug = f"{release.lower()}-{subset}-{split or 'all'}-{location}"
        # stem index in the .stem.mp4 container (musdb's table: mixture 0, drums 1, bass 2, other 3, vocals 4)
        self._stem_ids = dict(self._db.setup["stem_ids"])

    @property
    def sources(self) -> tuple[str, ...]:
        return MUSDB_SOURCES

    @property
    def track_names(self) -> list[str]:
        return [track.name for track in self._tracks]

    def load(self, index: int) -> Stems:
        track = self._tracks[index]
        try:
            stems = np.asarray(track.stems, dtype=np.float32)  # [stems, time, channels], one decode for all
        except Exception as error:  # musdb/stempeg raise many types (ffmpeg missing, bad container)
            raise WaveUNetError(f"{track.path}: cannot decode MUSDB18 track ({error})") from None
        names = (MIXTURE, *MUSDB_SOURCES)
        waveforms = {name: torch.from_numpy(stems[self._stem_ids[name]].T.copy()) for name in names}
        files = {name: Path(track.sources[name].path) if name != MIXTURE else Path(track.path) for name in names}
        return Stems(waveforms, {name: int(track.rate) for name in names}, files)

    def subset_of(self, index: int) -> str:
        return self.subset

    def identity(self) -> dict:
        return {
            "collection": "musdb18",
            "root": str(self.root.resolve()),
            "subset": self.subset,
            "split": self.split,
            "is_wav": self.is_wav,
            "tracks": [[track.name, *self._fingerprints(track)] for track in self._tracks],
        }

    def _fingerprints(self, track) -> list:
        path = Path(track.path)
        files = sorted(path.parent.glob("*.wav")) if self.is_wav else [path]
        return [file_fingerprint(file, self.root) for file in files]
