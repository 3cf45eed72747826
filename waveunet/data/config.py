"""The data section of a training recipe, and the datasets it makes for a model.

::

    [data]
    format = "musdb-hq"           # musdb (.stem.mp4) | musdb-hq (WAV) | folder
    root = "~/data/musdb18hq"
    train_split = "train"         # musdb's official split of the train subset; "all" for the whole subset
    valid_split = "valid"

For ``folder`` data, ``root`` holds the training tracks and ``valid_root`` (default: ``root``) the
validation tracks. The sample rate, channels, targets and window lengths come from the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import WaveUNetError
from .augment import Augmentation
from .cache import open_cache
from .excerpts import TrainingExcerpts, ValidationExcerpts, WholeTracks
from .folders import TrackFolder
from .musdb18 import MUSDB18
from .targets import check_targets
from .tracks import TrackCollection

FORMATS = ("musdb", "musdb-hq", "folder")


@dataclass(frozen=True)
class DataConfig:
    """Where the tracks are and how training and validation sets are drawn from them.

    Attributes:
        format: ``musdb`` (compressed ``.stem.mp4``), ``musdb-hq`` (WAV folders) or ``folder``.
        root: the dataset folder (MUSDB18: the one holding ``train/`` and ``test/``).
        train_subset, train_split, valid_subset, valid_split: MUSDB18 subsets (``train``/``test``)
            and musdb's split of the train subset (``train``/``valid``, or ``all``).
        valid_root: ``folder`` format only: the validation tracks (default: ``root``).
        valid_excerpts_per_track: evenly spaced validation windows per track (None: all of them).
        cache_dir: where decoded tracks are cached (None: :func:`~waveunet.data.cache.default_cache_dir`).
    """

    format: str = "musdb"
    root: str = ""
    train_subset: str = "train"
    train_split: str = "train"
    valid_subset: str = "train"
    valid_split: str = "valid"
    valid_root: str | None = None
    valid_excerpts_per_track: int | None = None
    cache_dir: str | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise WaveUNetError(f"data.format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if not self.root:
            raise WaveUNetError("data.root is not set: give the dataset folder")
        if self.valid_excerpts_per_track is not None and self.valid_excerpts_per_track < 1:
            raise WaveUNetError(f"data.valid_excerpts_per_track must be at least 1; got {self.valid_excerpts_per_track}")


def open_collection(config: DataConfig, role: str) -> TrackCollection:
    """The tracks for ``role`` (``train`` or ``valid``)."""
    if config.format == "folder":
        root = config.root if role == "train" else (config.valid_root or config.root)
        return TrackFolder(Path(root).expanduser())
    subset, split = (config.train_subset, config.train_split) if role == "train" else (config.valid_subset, config.valid_split)
    return MUSDB18(Path(config.root).expanduser(), subset, None if split == "all" else split, is_wav=config.format == "musdb-hq")


def training_examples(
    config: DataConfig,
    *,
    targets: Sequence[str],
    sample_rate: int,
    channels: int,
    input_length: int,
    output_length: int,
    augmentation: Augmentation = Augmentation(),
    seed: int = 0,
    epoch_size: int = 2000 * 16,
    progress: bool = True,
) -> TrainingExcerpts:
    """Random training excerpts for a model with these targets, rate, channels and window lengths."""
    cache = _cache(config, "train", targets, sample_rate, channels, progress)
    return TrainingExcerpts(cache, targets, input_length, output_length, augmentation, seed, epoch_size)


def validation_examples(
    config: DataConfig,
    *,
    targets: Sequence[str],
    sample_rate: int,
    channels: int,
    input_length: int,
    output_length: int,
    progress: bool = True,
) -> ValidationExcerpts:
    """Fixed validation excerpts (see :class:`~waveunet.data.excerpts.ValidationExcerpts`)."""
    cache = _cache(config, "valid", targets, sample_rate, channels, progress)
    return ValidationExcerpts(cache, targets, input_length, output_length, config.valid_excerpts_per_track)


def validation_tracks(config: DataConfig, *, targets: Sequence[str], sample_rate: int, channels: int, progress: bool = True) -> WholeTracks:
    """Whole validation tracks, for validating by separating complete songs."""
    return WholeTracks(_cache(config, "valid", targets, sample_rate, channels, progress), targets)


def _cache(config, role, targets, sample_rate, channels, progress):
    collection = open_collection(config, role)
    check_targets(tuple(targets), collection.sources, collection.description)  # before a long decode
    return open_cache(collection, sample_rate, channels, config.cache_dir, progress)
