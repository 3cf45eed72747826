"""What gets scored: the reference targets of each track, and the estimates to score against them.

References come from MUSDB18 (through ``musdb``) or from a track-folder layout,
``DIR/<track>/<source>.<ext>`` with an optional mixture, through the collections of
:mod:`waveunet.data`. A track's *targets* are its sources plus ``accompaniment``, the sum of every
source but the vocals, as musdb defines it. Estimates are files ``EST_DIR/<track>/<target>.wav``
or the outputs of a model run on the track's mixture.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..audio import read_audio
from ..data.folders import EXTENSIONS, TrackFolder
from ..data.musdb18 import MUSDB18, SUBSETS
from ..data.targets import ACCOMPANIMENT, MIXTURE, MUSDB_SOURCES, VOCALS, build_target, sum_of
from ..data.tracks import TrackCollection
from ..errors import WaveUNetError


@dataclass
class ReferenceTrack:
    """One track's true targets, each [channels, time] at ``sample_rate``, all the same length."""

    name: str
    #: the MUSDB18 subset (``train``/``test``), None for a track folder; museval files JSON under it
    subset: str | None
    sample_rate: int
    targets: dict[str, torch.Tensor]
    mixture: torch.Tensor
    #: where each target came from, for error messages
    location: Path

    @property
    def length(self) -> int:
        return self.mixture.shape[-1]

    @property
    def channels(self) -> int:
        return self.mixture.shape[0]


class EstimateLengthWarning(UserWarning):
    """An estimate longer or shorter than its reference (cut or zero-padded, as museval does)."""


def open_references(*, musdb: str | Path | None = None, is_wav: bool = False, subset: str | None = "test",
                    split: str | None = None, references: str | Path | None = None) -> TrackCollection:
    """MUSDB18 under ``musdb`` (one subset, optionally musdb's split; ``subset=None``: every
    subset the root has), or a track folder."""
    if (musdb is None) == (references is None):
        raise WaveUNetError("give the reference tracks as either --musdb ROOT or --references DIR")
    if musdb is None:
        return TrackFolder(references)
    if subset is not None or split is not None:
        return MUSDB18(musdb, subset=subset or "train", split=split, is_wav=is_wav)
    present = [name for name in SUBSETS if (Path(musdb) / name).is_dir()]
    if not present:
        raise WaveUNetError(f"{musdb}: no MUSDB18 subset folder ({' or '.join(f'{n}/' for n in SUBSETS)})")
    parts = [MUSDB18(musdb, subset=name, is_wav=is_wav) for name in present]
    return parts[0] if len(parts) == 1 else SubsetChain(parts)


class SubsetChain(TrackCollection):
    """The tracks of several MUSDB18 subsets of one root, one after the other."""

    def __init__(self, parts: Sequence[MUSDB18]):
        self.parts = list(parts)
        self._index = [(part, i) for part in self.parts for i in range(len(part))]
        names = [part.track_names[i] for part, i in self._index]
        seen = {}
        for (part, _), name in zip(self._index, names):
            if name in seen and seen[name] is not part:
                raise WaveUNetError(f"{part.root}: track {name!r} is in both {seen[name].subset}/ and {part.subset}/")
            seen[name] = part
        self._names = names
        release = "MUSDB18-HQ" if self.parts[0].is_wav else "MUSDB18"
        self.description = f"{release} {' and '.join(p.subset for p in self.parts)} at {self.parts[0].root}"
        self.slug = "+".join(part.slug for part in self.parts)

    @property
    def sources(self) -> tuple[str, ...]:
        return self.parts[0].sources

    @property
    def track_names(self) -> list[str]:
        return list(self._names)

    def load(self, index: int):
        part, i = self._index[index]
        return part.load(i)

    def subset_of(self, index: int) -> str:
        return self._index[index][0].subset

    def identity(self) -> dict:
        return {"collection": "musdb18-subsets", "parts": [part.identity() for part in self.parts]}


def select_tracks(collection: TrackCollection, names: Sequence[str] | None) -> list[int]:
    """Indices of the tracks called ``names`` (all tracks if None), in the collection's order."""
    if not names:
        return list(range(len(collection)))
    index = {name: i for i, name in enumerate(collection.track_names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise WaveUNetError(f"{collection.description}: no track named {missing[0]!r}")
    return sorted(index[name] for name in dict.fromkeys(names))


def available_targets(collection: TrackCollection) -> tuple[str, ...]:
    """The targets a collection can score: its sources and, if some source is not vocals,
    ``accompaniment``; in musdb's order (vocals, drums, bass, other, accompaniment), which sets
    the order of museval's JSON, other sources after the MUSDB18 ones."""
    sources = collection.sources
    ordered = [s for s in MUSDB_SOURCES if s in sources] + [s for s in sources if s not in MUSDB_SOURCES]
    if ACCOMPANIMENT not in sources and any(s != VOCALS for s in sources):
        ordered.append(ACCOMPANIMENT)
    return tuple(ordered)


def load_reference(collection: TrackCollection, index: int, targets: Sequence[str]) -> ReferenceTrack:
    """Decode track ``index`` and build ``targets`` from its stems.

    Stems must share one sample rate (BSSEval compares samples); they are cut to the shortest,
    which only differs by codec padding (:class:`~waveunet.data.folders.TrackFolder` refuses more).
    Without a mixture stem the mixture is the sum of the sources.
    """
    name = collection.track_names[index]
    stems = collection.load(index)
    location = Path(next(iter(stems.files.values()))).parent
    rates = stems.sample_rates
    first = next(iter(rates))
    for stem, rate in rates.items():
        if rate != rates[first]:
            raise WaveUNetError(f"{stems.files[stem]}: {rate} Hz but {stems.files[first].name} is "
                                f"{rates[first]} Hz; a track's stems must share one sample rate")
    channels = {stem: waveform.shape[0] for stem, waveform in stems.waveforms.items()}
    for stem, count in channels.items():
        if count != channels[first]:
            raise WaveUNetError(f"{stems.files[stem]}: {count} channel(s) but {stems.files[first].name} "
                                f"has {channels[first]}; a track's stems must share a channel count")
    length = min(waveform.shape[-1] for waveform in stems.waveforms.values())
    waveforms = {stem: waveform[:, :length] for stem, waveform in stems.waveforms.items()}
    sources = {stem: waveform for stem, waveform in waveforms.items() if stem != MIXTURE}
    mixture = waveforms.get(MIXTURE)
    if mixture is None:
        mixture = sum_of(sources.values())
    return ReferenceTrack(name=name, subset=collection.subset_of(index), sample_rate=rates[first],
                          targets={target: build_target(sources, target) for target in targets},
                          mixture=mixture, location=location)


def read_estimates(folder: Path, reference: ReferenceTrack) -> dict[str, torch.Tensor]:
    """The estimates ``folder/<target>.<ext>`` of the reference's targets, each [channels, time].

    Files that name no target of the track are an error (a typo would otherwise go unscored).
    Estimates longer or shorter than the track are cut or zero-padded at the end, as museval does,
    with a warning.
    """
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: no estimates folder for track {reference.name!r}")
    estimates = {}
    for file in sorted(folder.iterdir()):
        if file.suffix.lower() not in EXTENSIONS or file.name.startswith("."):
            continue
        target = file.name[: -len(file.suffix)].lower()
        if target not in reference.targets:
            raise WaveUNetError(f"{file}: the reference track has no target {target!r} "
                                f"(it has: {', '.join(reference.targets)})")
        if target in estimates:
            raise WaveUNetError(f"{folder}: two estimates for {target!r}")
        audio, rate = read_audio(file)
        if rate != reference.sample_rate:
            raise WaveUNetError(f"{file}: {rate} Hz but the reference is {reference.sample_rate} Hz; "
                                f"estimates must be at the reference's sample rate")
        estimates[target] = fit_estimate(audio, reference, str(file))
    if not estimates:
        raise WaveUNetError(f"{folder}: no estimate files ({'/'.join(EXTENSIONS)}) for track {reference.name!r}")
    return estimates


def fit_estimate(estimate: torch.Tensor, reference: ReferenceTrack, name: str) -> torch.Tensor:
    """Check an estimate [channels, time] against the track and bring it to the track's length."""
    if estimate.shape[0] != reference.channels:
        raise WaveUNetError(f"{name}: {estimate.shape[0]} channel(s) but the reference has "
                            f"{reference.channels}; BSSEval compares channel by channel")
    found, length = estimate.shape[-1], reference.length
    if found != length:
        action = "truncated" if found > length else "zero-padded at the end"
        warnings.warn(EstimateLengthWarning(f"{name}: {found} samples but the reference has {length}: "
                                            f"{action}, as museval does"), stacklevel=2)
        estimate = F.pad(estimate[:, :length], (0, max(0, length - found)))
    return estimate


def separate_track(model, reference: ReferenceTrack, device=None) -> dict[str, torch.Tensor]:
    """The model's estimates of the targets the track has, from the track's mixture."""
    from ..separation import separate

    estimates = separate(model, reference.mixture, reference.sample_rate, device=device)
    kept = {target: estimate.cpu() for target, estimate in estimates.items() if target in reference.targets}
    if not kept:
        raise WaveUNetError(f"{reference.location}: the model's sources ({', '.join(estimates)}) "
                            f"are none of the track's targets ({', '.join(reference.targets)})")
    return {target: fit_estimate(estimate, reference, f"{target} estimate of {reference.name!r}")
            for target, estimate in kept.items()}
