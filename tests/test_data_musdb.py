"""MUSDB18 through musdb: the bundled real track as MUSDB18-HQ (WAV) and as a .stem.mp4 (AAC)."""

import shutil
from pathlib import Path

import pytest
import torch

from waveunet.audio import read_audio, resample
from waveunet.data import (
    MUSDB18,
    DataConfig,
    WholeTracks,
    open_cache,
    training_examples,
    validation_examples,
    validation_tracks,
)
from waveunet.errors import WaveUNetError

DATA = Path(__file__).parent / "data"
HQ = DATA / "musdb18hq-sample"
STEMS = DATA / "musdb18-sample"
TRACK = "Music Delta - 80s Rock"
SR = 22050
QUANTUM = 1 / 32767  # one step of the cache's 16-bit samples at scale 1

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="decoding .stem.mp4 needs ffmpeg")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def hq_tracks(cache_dir):
    return WholeTracks(open_cache(MUSDB18(HQ, "train", is_wav=True), SR, 2, cache_dir, progress=False), ("vocals", "drums", "bass", "other"))


def test_hq_cache_holds_the_resampled_wav_files(hq_tracks):
    mixture, targets = hq_tracks[0]
    assert hq_tracks.track_names == [TRACK]
    for name, target in zip(hq_tracks.targets, targets):
        audio, sr = read_audio(HQ / "train" / TRACK / f"{name}.wav")
        expected = resample(audio, sr, SR)
        assert target.shape == expected.shape == (2, 150016)
        assert (target - expected).abs().max() <= QUANTUM
    own_mixture, _ = read_audio(HQ / "train" / TRACK / "mixture.wav")
    assert (mixture - resample(own_mixture, 44100, SR)).abs().max() <= QUANTUM
    # It is the dataset's own mixture, not the sum of the stems (they differ by the AAC coding error).
    assert 0.01 < (mixture - targets.sum(0)).abs().max() < 0.1


@needs_ffmpeg
def test_stem_mp4_decodes_to_the_same_track_as_hq(hq_tracks, cache_dir):
    stems = WholeTracks(open_cache(MUSDB18(STEMS, "train"), SR, 2, cache_dir, progress=False), hq_tracks.targets)
    mixture, targets = stems[0]
    hq_mixture, hq_targets = hq_tracks[0]
    assert mixture.shape == hq_mixture.shape
    # The WAV files are this stem file decoded: equal up to 16-bit rounding and decoder differences.
    assert (mixture - hq_mixture).abs().max() < 1e-3
    assert (targets - hq_targets).abs().max() < 1e-3
    assert targets.abs().amax(dim=(1, 2)).min() > 0.05  # every stream decoded, none silent


@needs_ffmpeg
def test_stem_mp4_trains_a_mono_accompaniment_model(cache_dir):
    config = DataConfig(format="musdb", root=str(STEMS), train_split="all", cache_dir=str(cache_dir))
    data = training_examples(config, targets=("accompaniment", "vocals"), sample_rate=8192, channels=1,
                             input_length=4001, output_length=1001, progress=False)
    mixture, targets = data[0]
    assert mixture.shape == (1, 4001) and targets.shape == (2, 1, 1001)
    assert data.cache.sample_rate == 8192 and data.cache.tracks[0].frames == round(300032 * 8192 / 44100)


def test_official_split(cache_dir):
    assert MUSDB18(HQ, "train", "train", is_wav=True).track_names == [TRACK]
    # The bundled track is in musdb's training split, so its validation split is empty here.
    with pytest.raises(WaveUNetError, match=r"musdb18hq-sample/train: no MUSDB18-HQ tracks .* for train \(valid split\)"):
        MUSDB18(HQ, "train", "valid", is_wav=True)
    config = DataConfig(format="musdb-hq", root=str(HQ), cache_dir=str(cache_dir))
    with pytest.raises(WaveUNetError, match="valid split"):
        validation_examples(config, targets=("vocals",), sample_rate=SR, channels=2, input_length=10, output_length=10)


def test_validation_excerpts_cover_the_track(cache_dir):
    config = DataConfig(format="musdb-hq", root=str(HQ), valid_split="all", cache_dir=str(cache_dir))
    data = validation_examples(config, targets=("accompaniment", "vocals"), sample_rate=SR, channels=2,
                               input_length=147443, output_length=16389, progress=False)
    starts = [start for _, start in data.windows]
    assert starts[0] == 0 and starts[-1] == 150016 - 16389 and len(starts) == 10
    whole = validation_tracks(config, targets=("accompaniment", "vocals"), sample_rate=SR, channels=2, progress=False)
    _, track_targets = whole[0]
    for index, start in enumerate(starts):
        _, targets = data[index]
        assert torch.equal(targets, track_targets[..., start : start + 16389])


def test_errors_name_the_problem(tmp_path, cache_dir):
    with pytest.raises(WaveUNetError, match=r"nowhere/train: MUSDB18 folder not found"):
        MUSDB18(tmp_path / "nowhere", "train")
    with pytest.raises(WaveUNetError, match="unknown MUSDB18 subset 'dev'"):
        MUSDB18(HQ, "dev")
    with pytest.raises(WaveUNetError, match="split divides the train subset"):
        MUSDB18(HQ, "test", "valid")
    # The WAV layout read as the .stem.mp4 release finds no tracks.
    with pytest.raises(WaveUNetError, match=r"no MUSDB18 tracks \(.stem.mp4 files\)"):
        MUSDB18(HQ, "train")
    config = DataConfig(format="musdb-hq", root=str(HQ), train_split="all", cache_dir=str(cache_dir))
    with pytest.raises(WaveUNetError, match=r"MUSDB18-HQ train at .*: the dataset has no source 'piano' \(it has: vocals, drums, bass, other\)"):
        training_examples(config, targets=("vocals", "piano"), sample_rate=SR, channels=2, input_length=10, output_length=10)
    with pytest.raises(WaveUNetError, match="data.format must be one of"):
        DataConfig(format="mp3", root="x")
    with pytest.raises(WaveUNetError, match="data.root is not set"):
        DataConfig(format="musdb")
