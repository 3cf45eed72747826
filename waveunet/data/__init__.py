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

#: public name -> the module defining it; imported on first use, so that importing one module of
#: the package (the trainer takes only ``sampling``) does not import the whole audio pipeline
_LAZY = {
    "Augmentation": "augment",
    "DecodedCache": "cache", "default_cache_dir": "cache", "open_cache": "cache",
    "DataConfig": "config", "open_collection": "config", "training_examples": "config",
    "validation_examples": "config", "validation_tracks": "config",
    "TrainingExcerpts": "excerpts", "ValidationExcerpts": "excerpts", "WholeTracks": "excerpts",
    "TrackFolder": "folders",
    "MUSDB18": "musdb18",
    "StreamSampler": "sampling",
    "ACCOMPANIMENT": "targets", "MIXTURE": "targets", "MUSDB_SOURCES": "targets",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
