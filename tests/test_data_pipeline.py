"""Track folders, the decoded cache, excerpt geometry, augmentation and the reproducible stream."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from waveunet.data import (
    Augmentation,
    DataConfig,
    StreamSampler,
    TrackFolder,
    TrainingExcerpts,
    ValidationExcerpts,
    WholeTracks,
    open_cache,
    training_examples,
)
from waveunet.data.cache import default_cache_dir
from waveunet.errors import WaveUNetError

SR = 8000
FRAMES = 4000
INPUT, OUTPUT = 1001, 201
LEFT = (INPUT - OUTPUT) // 2
#: the sources of the generated tracks and their share of the ramp the mixture is
SHARES = {"vocals": 0.3, "drums": 0.2, "bass": 0.4, "other": 0.1}


def ramp(frames=FRAMES):
    """(i + 1) / 8000 at sample i: never zero, and a sample's value tells its position."""
    return (np.arange(frames) + 1) / 8000


def write_track(folder, sign=1.0, ext="wav", signal=None, shares=SHARES, **write):
    """A stereo track whose sources add up to ``sign * signal`` (default the ramp) on the left, half of it on the right."""
    signal = ramp() if signal is None else signal
    folder.mkdir(parents=True)
    for name, share in shares.items():
        left = sign * share * signal
        sf.write(folder / f"{name}.{ext}", np.stack([left, left / 2], axis=1).astype(np.float32), SR, **write)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    write_track(root / "a", subtype="FLOAT")
    write_track(root / "b", sign=-1.0, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def cache(folder, tmp_path_factory):
    return open_cache(TrackFolder(folder), SR, 2, tmp_path_factory.mktemp("cache"), progress=False)


def excerpts(cache, augmentation=Augmentation(), seed=0, targets=tuple(SHARES)):
    return TrainingExcerpts(cache, targets, INPUT, OUTPUT, augmentation, seed=seed, epoch_size=64)


# --------------------------------------------------------------------------------- track folders


def test_folder_of_mp3_stems(tmp_path):
    root = tmp_path / "songs"
    shares = {"vocals": 0.5, "guitar": 0.25, "bass": 0.25}
    tone = 0.8 * np.sin(2 * np.pi * 220 * np.arange(22050) / SR)
    write_track(root / "one", ext="mp3", signal=tone, shares=shares)
    write_track(root / "two", ext="mp3", signal=tone, shares=shares)
    config = DataConfig(format="folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    data = training_examples(config, targets=("vocals", "accompaniment"), sample_rate=SR, channels=2,
                             input_length=INPUT, output_length=OUTPUT, progress=False)
    assert data.cache.sources == ("bass", "guitar", "vocals")
    assert [track.name for track in data.cache.tracks] == ["one", "two"]
    assert data.cache.tracks[0].frames == 22050
    whole = WholeTracks(data.cache, ("vocals", "accompaniment", "bass", "guitar"))
    mixture, targets = whole[0]
    # No mixture file: the mixture is the sum of the (decoded) sources, the accompaniment the non-vocals.
    assert torch.allclose(mixture, targets[0] + targets[2] + targets[3], atol=1e-4)
    assert torch.allclose(targets[1], targets[2] + targets[3], atol=1e-4)
    # MP3 is lossy but sample-aligned: the decoded vocals are the tone, give or take the codec.
    assert (targets[0, 0] - torch.from_numpy(0.5 * tone).float()).abs().mean() < 0.01
    mixture, targets = data[0]
    assert mixture.shape == (2, INPUT) and targets.shape == (2, 2, OUTPUT)


def test_folder_with_a_mixture_file_uses_it(tmp_path):
    write_track(tmp_path / "songs" / "a", subtype="FLOAT")
    sf.write(tmp_path / "songs" / "a" / "mixture.flac", np.full((FRAMES, 2), 0.25), SR)
    tracks = WholeTracks(open_cache(TrackFolder(tmp_path / "songs"), SR, 2, tmp_path / "cache", progress=False), ("vocals",))
    mixture, _ = tracks[0]
    assert torch.allclose(mixture, torch.full((2, FRAMES), 0.25), atol=1e-4)


def test_folder_errors(tmp_path):
    with pytest.raises(WaveUNetError, match="missing: track folder not found"):
        TrackFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WaveUNetError, match="empty: no track folders"):
        TrackFolder(tmp_path / "empty")
    root = tmp_path / "songs"
    write_track(root / "a")
    write_track(root / "b", shares={"vocals": 0.5, "drums": 0.5})
    with pytest.raises(WaveUNetError, match=r"songs/b: no bass file \(track 'a' has one\)"):
        TrackFolder(root)
    (root / "b" / "bass.wav").write_bytes((root / "a" / "bass.wav").read_bytes())
    (root / "b" / "other.wav").write_bytes((root / "a" / "other.wav").read_bytes()[:3000])
    with pytest.raises(WaveUNetError, match=r"songs/b/other.wav: audio file is truncated"):
        TrackFolder(root)
    (root / "b" / "other.wav").write_bytes((root / "a" / "other.wav").read_bytes())
    config = DataConfig(format="folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(WaveUNetError, match=r"track folder .*songs: the dataset has no source 'piano'"):
        training_examples(config, targets=("piano",), sample_rate=SR, channels=2, input_length=INPUT, output_length=OUTPUT)
    assert not (tmp_path / "cache").exists()  # refused before decoding anything
    sf.write(root / "b" / "vocals.flac", np.zeros((10, 2)), SR)
    with pytest.raises(WaveUNetError, match=r"songs/b: two files for source 'vocals'"):
        TrackFolder(root)


def test_stems_of_different_lengths_are_refused(tmp_path):
    write_track(tmp_path / "songs" / "a")
    sf.write(tmp_path / "songs" / "a" / "vocals.wav", np.zeros((FRAMES * 2, 2)), SR)
    with pytest.raises(WaveUNetError, match=r"vocals.wav: 1.00 s long but .* is 0.50 s"):
        open_cache(TrackFolder(tmp_path / "songs"), SR, 2, tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # the interrupted build left nothing behind


# ------------------------------------------------------------------------------- excerpt geometry


def test_excerpts_are_real_context_around_the_target(cache):
    data = excerpts(cache)
    starts = []
    for n in range(60):
        mixture, targets = data[n]
        left = mixture[0].numpy()
        present = np.flatnonzero(left != 0)
        first, last = present[0], present[-1]
        # Zeros only at the ends, and only where the window passes the edge of the track.
        assert (present == np.arange(first, last + 1)).all()
        position = round(abs(left[first]) * 8000) - 1  # track sample where the real signal begins
        assert first == 0 or position == 0
        assert INPUT - 1 - last == 0 or position + (last - first) == FRAMES - 1
        output_start = position - first + LEFT
        assert 0 <= output_start <= FRAMES - OUTPUT
        starts.append(output_start)
        # The sources add up to the mixture, and the targets are its centre.
        centre = mixture[:, LEFT : LEFT + OUTPUT]
        assert torch.allclose(targets.sum(0), centre, atol=3e-4)
        assert torch.allclose(targets[0], 0.3 * centre, atol=1e-4)
        assert torch.allclose(mixture[1], mixture[0] / 2, atol=1e-4)
    assert min(starts) < LEFT and max(starts) > FRAMES - OUTPUT - LEFT  # edges are reached


def test_targets_follow_the_requested_order_with_accompaniment(cache):
    data = excerpts(cache, targets=("accompaniment", "vocals"))
    mixture, targets = data[3]
    centre = mixture[:, LEFT : LEFT + OUTPUT]
    assert torch.allclose(targets[1], 0.3 * centre, atol=1e-4)
    assert torch.allclose(targets[0], 0.7 * centre, atol=3e-4)


def test_mono_models_average_the_channels(folder, tmp_path):
    mono = WholeTracks(open_cache(TrackFolder(folder), SR, 1, tmp_path, progress=False), ("vocals",))
    mixture, vocals = mono[0]
    expected = torch.from_numpy(0.75 * ramp()).float()
    assert mixture.shape == (1, FRAMES) and torch.allclose(mixture[0], expected, atol=1e-4)
    assert torch.allclose(vocals[0, 0], 0.3 * expected, atol=1e-4)


def test_tracks_shorter_than_the_output_are_padded(folder, tmp_path):
    write_track(tmp_path / "short" / "a", signal=ramp(150), subtype="FLOAT")
    data = excerpts(open_cache(TrackFolder(tmp_path / "short"), SR, 2, tmp_path / "cache", progress=False))
    mixture, targets = data[0]
    assert torch.count_nonzero(mixture[0]) == 150 and torch.count_nonzero(targets[0, 0]) == 150
    assert mixture[0, LEFT] != 0 and mixture[0, LEFT - 1] == 0


def test_validation_windows_tile_each_track(cache):
    data = ValidationExcerpts(cache, ("vocals",), INPUT, OUTPUT)
    per_track = [start for track, start in data.windows if track == 0]
    assert per_track == [*range(0, FRAMES - OUTPUT, OUTPUT), FRAMES - OUTPUT]
    assert len(data) == 2 * len(per_track)
    _, vocals = WholeTracks(cache, ("vocals",))[1]
    index = data.windows.index((1, 402))
    assert torch.equal(data[index][1], vocals[..., 402 : 402 + OUTPUT])
    few = ValidationExcerpts(cache, ("vocals",), INPUT, OUTPUT, excerpts_per_track=3)
    assert few.windows == [(0, 0), (0, per_track[len(per_track) // 2]), (0, FRAMES - OUTPUT),
                           (1, 0), (1, per_track[len(per_track) // 2]), (1, FRAMES - OUTPUT)]


# -------------------------------------------------------------------------------------- augmentation


def test_gain_scales_each_source_and_recomputes_the_mixture(cache):
    plain, scaled = excerpts(cache), excerpts(cache, Augmentation(gain=True))
    gains = []
    for n in range(20):
        _, targets = plain[n]
        mixture_g, targets_g = scaled[n]
        for source, source_g in zip(targets[:, 0], targets_g[:, 0]):
            active = source.abs() > 1e-3
            ratio = source_g[active] / source[active]
            assert ratio.max() - ratio.min() < 2e-2  # one gain per source and example
            gains.append(ratio.mean().item())
        assert torch.allclose(targets_g.sum(0), mixture_g[:, LEFT : LEFT + OUTPUT], atol=1e-5)
    assert 0.69 < min(gains) and max(gains) < 1.01 and max(gains) - min(gains) > 0.2


def test_channel_swap_flips_all_stems_together(cache):
    plain, swapping = excerpts(cache), excerpts(cache, Augmentation(channel_swap=True))
    flipped = 0
    for n in range(30):
        mixture, targets = plain[n]
        mixture_s, targets_s = swapping[n]
        if torch.equal(mixture_s, mixture):
            assert torch.equal(targets_s, targets)
        else:
            assert torch.equal(mixture_s, mixture.flip(0)) and torch.equal(targets_s, targets.flip(1))
            flipped += 1
    assert 5 < flipped < 25


def test_remix_draws_sources_from_different_tracks(cache):
    data = excerpts(cache, Augmentation(remix=True))
    mixed = 0
    for n in range(40):
        mixture, targets = data[n]
        # Track a is positive, track b negative: the signs say where each source came from.
        signs = {int(torch.sign(t[0][t[0] != 0][0])) for t in targets if t[0].abs().max() > 0}
        mixed += len(signs) == 2
        assert torch.allclose(mixture.sum(0)[LEFT : LEFT + OUTPUT], targets.sum(0).sum(0), atol=1e-5)
    assert mixed > 20


# ---------------------------------------------------------------------------------- determinism


def test_examples_depend_on_seed_and_index_only(cache):
    augmentation = Augmentation(gain=True, channel_swap=True, remix=True)
    data = excerpts(cache, augmentation, seed=7)
    again = excerpts(cache, augmentation, seed=7)
    backwards = [again[n] for n in reversed(range(10))][::-1]
    for n in range(10):
        assert all(torch.equal(a, b) for a, b in zip(data[n], backwards[n]))
    other_seed = excerpts(cache, augmentation, seed=8)
    assert not torch.equal(data[0][0], other_seed[0][0])
    assert not torch.equal(data[0][0], data[1][0])


def batches(data, sampler, workers, batch):
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers)
    return [mixture for mixture, _ in loader]


def test_workers_ranks_and_resume_reproduce_the_stream(cache):
    data = excerpts(cache, Augmentation(gain=True, channel_swap=True))
    single = StreamSampler(64)
    single.set_epoch(3)
    reference = torch.cat(batches(data, single, workers=0, batch=8))
    assert list(single) == list(range(192, 256))
    # Two DataLoader workers deliver the same stream.
    assert torch.equal(torch.cat(batches(data, single, workers=2, batch=8)), reference)
    # Two ranks with half the batch each: global step k trains on the same 8 examples.
    ranks = [StreamSampler(64, rank, 2) for rank in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(3)
    per_rank = [batches(data, sampler, workers=0, batch=4) for sampler in ranks]
    for step, (a, b) in enumerate(zip(*per_rank)):
        together = torch.stack([a, b], dim=1).flatten(0, 1)  # interleave: rank r holds positions r, r+2, ...
        assert torch.equal(together, reference[step * 8 : (step + 1) * 8])
    # Resuming after 5 steps continues exactly where the stream stopped.
    single.set_epoch(3, start=5 * 8)
    assert len(single) == 24
    assert torch.equal(torch.cat(batches(data, single, workers=0, batch=8)), reference[40:])
    single.set_epoch(4)
    assert not torch.equal(torch.cat(batches(data, single, workers=0, batch=8)), reference)


def test_sampler_errors():
    with pytest.raises(WaveUNetError, match="rank 2 is not in a job of 2"):
        StreamSampler(64, 2, 2)
    with pytest.raises(WaveUNetError, match="epoch size 1 is smaller than the 2 processes"):
        StreamSampler(1, 0, 2)
    with pytest.raises(WaveUNetError, match="cannot start at example 40"):
        StreamSampler(64, 0, 2).set_epoch(0, start=40)


def test_workers_do_not_receive_copies_of_the_memory_maps(cache):
    cache.window(0, 0, 10)
    assert cache._maps and not cache.__getstate__()["_maps"]


# -------------------------------------------------------------------------------------------- cache


def test_cache_is_reused_and_rebuilt_when_its_key_changes(folder, tmp_path, monkeypatch):
    root = tmp_path / "songs"
    write_track(root / "a", subtype="FLOAT")
    decoded = []
    original = TrackFolder.load
    monkeypatch.setattr(TrackFolder, "load", lambda self, index: decoded.append(index) or original(self, index))

    first = open_cache(TrackFolder(root), SR, 2, tmp_path / "cache", progress=False)
    assert decoded == [0]
    again = open_cache(TrackFolder(root), SR, 2, tmp_path / "cache", progress=False)
    assert decoded == [0] and again.folder == first.folder  # reused, nothing decoded

    # Another sample rate or channel count: a cache of its own, the first one kept.
    half = open_cache(TrackFolder(root), SR // 2, 2, tmp_path / "cache", progress=False)
    mono = open_cache(TrackFolder(root), SR, 1, tmp_path / "cache", progress=False)
    assert decoded == [0, 0, 0] and len({first.folder, half.folder, mono.folder}) == 3
    assert half.tracks[0].frames == FRAMES // 2 and mono.channels == 1
    assert first.folder.exists()

    # Editing the data rebuilds the cache and drops the stale copy.
    sf.write(root / "a" / "vocals.wav", np.zeros((FRAMES, 2), dtype=np.float32), SR, subtype="FLOAT")
    os.utime(root / "a" / "vocals.wav", ns=(1, 1))
    edited = open_cache(TrackFolder(root), SR, 2, tmp_path / "cache", progress=False)
    assert decoded == [0, 0, 0, 0] and edited.folder != first.folder
    assert not first.folder.exists() and half.folder.exists()
    assert WholeTracks(edited, ("vocals",))[0][1].abs().max() == 0


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVEUNET_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("WAVEUNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "waveunet" / "data"
    locked = tmp_path / "file"
    locked.write_text("not a folder")
    write_track(tmp_path / "songs" / "a")
    with pytest.raises(WaveUNetError, match="cannot create the data cache folder"):
        open_cache(TrackFolder(tmp_path / "songs"), SR, 2, locked / "cache", progress=False)
