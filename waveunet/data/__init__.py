"""Training data: MUSDB18 and track folders, decoded once, cut into excerpts for the model.

The pipeline, one module per step::

    tracks     a collection of multitrack songs     musdb18.MUSDB18, folders.TrackFolder
    cache      decoded once at the model's rate     cache.open_cache -> DecodedCache (memory-mapped)
    excerpts   model-sized examples                 excerpts.TrainingExcerpts / ValidationExcerpts / WholeTracks
    augment    gain, channel swap, remix            augment.Augmentation
    sampling   who draws which example when         sampling.StreamSampler (seeding explained there)

Typical use (``model`` from :func:`waveunet.build_model`)::

    data = DataConfig(format="musdb-hq", root="~/musdb18hq")
    c = model.config
    train = training_examples(data, targets=c.sources, sample_rate=c.sample_rate, channels=c.channels,
                              input_length=model.input_length, output_length=model.output_length,
                              augmentation=Augmentation(gain=True), seed=1, epoch_size=2000 * 16)
    sampler = StreamSampler(train.epoch_size, rank, world_size)
    loader = DataLoader(train, batch_size=16, sampler=sampler, num_workers=2)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for mixture, targets in loader:   # [16, C, input_length], [16, K, C, output_length]
            ...
"""

from .augment import Augmentation
from .cache import DecodedCache, default_cache_dir, open_cache
from .config import DataConfig, open_collection, training_examples, validation_examples, validation_tracks
from .excerpts import TrainingExcerpts, ValidationExcerpts, WholeTracks
from .folders import TrackFolder
from .musdb18 import MUSDB18
from .sampling import StreamSampler
from .targets import ACCOMPANIMENT, MIXTURE, MUSDB_SOURCES

__all__ = [
    "ACCOMPANIMENT",
    "Augmentation",
    "DataConfig",
    "DecodedCache",
    "MIXTURE",
    "MUSDB18",
    "MUSDB_SOURCES",
    "StreamSampler",
    "TrackFolder",
    "TrainingExcerpts",
    "ValidationExcerpts",
    "WholeTracks",
    "default_cache_dir",
    "open_cache",
    "open_collection",
    "training_examples",
    "validation_examples",
    "validation_tracks",
]
