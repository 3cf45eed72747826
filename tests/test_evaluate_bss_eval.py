"""The fast BSSEval v4 against museval: its regression reference, and museval run on the spot."""

import json
import warnings
from pathlib import Path

import museval
import numpy as np
import pytest
import soundfile as sf
import torch

from waveunet.evaluate import bss_eval

DATA = Path(__file__).parent / "data"
TRACK = DATA / "musdb18hq-sample" / "train" / "Music Delta - 80s Rock"
REFERENCE = DATA / "museval-reference" / "Music Delta - 80s Rock.json"
METRICS = ("SDR", "ISR", "SIR", "SAR")  # the order bss_eval returns them in
TOLERANCE_DB = 0.01


def stems(*names):
    """[sources, time, channels] float64, as musdb gives them."""
    return np.stack([sf.read(TRACK / f"{name}.wav")[0] for name in names])


def assert_close_db(ours, theirs):
    """Every frame of every metric within TOLERANCE_DB, NaN exactly where museval has NaN."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE_DB, equal_nan=True)


def realistic_estimates(references, seed=0):
    """The true sources plus a little noise, a little leakage from the other sources, and one
    estimate silent from 1 s to 2.07 s: museval scores the frame it covers (1 s to 2 s) NaN for all
    sources, and the next frame, partly silent, poorly."""
    rng = np.random.default_rng(seed)
    estimates = references + 0.02 * references.std() * rng.standard_normal(references.shape)
    estimates += 0.05 * (references.sum(axis=0, keepdims=True) - references)
    estimates[1, 44100:2 * 44100 + 3000] = 0
    return estimates


def test_museval_regression_reference():
    """museval's own reference: random estimates for vocals and accompaniment."""
    reference = json.loads(REFERENCE.read_text())
    vocals, drums, bass, other = stems("vocals", "drums", "bass", "other")
    references = np.stack([vocals, drums + bass + other])
    np.random.seed(0)
    estimates = np.stack([np.random.random(vocals.shape), np.random.random(vocals.shape)])

    scores = bss_eval(references, estimates)

    for target, name in zip(reference["targets"], ("vocals", "accompaniment")):
        assert target["name"] == name
    expected = np.array([[[frame["metrics"][metric] for frame in target["frames"]]
                          for target in reference["targets"]] for metric in METRICS], dtype=float)
    assert expected.shape == (4, 2, 6)
    assert_close_db(np.stack(scores), expected)


def test_realistic_estimates_four_sources_match_museval():
    references = stems("vocals", "drums", "bass", "other")[:, :4 * 44100]
    estimates = realistic_estimates(references)

    ours = bss_eval(references, estimates)
    theirs = museval.evaluate(references, estimates)

    assert_close_db(np.stack(ours), np.stack(theirs))
    assert np.isnan(ours.sdr[:, 1]).all() and np.isfinite(ours.sdr[:, [0, 2, 3]]).all()
    assert 10 < np.nanmedian(ours.sdr) < 40  # a realistic regime, not a degenerate one


@pytest.mark.parametrize("window, hop", [(2 * 44100, 66150), (10**7, 10**7), (30000, 20000)])
def test_window_and_hop_match_museval(window, hop):
    """Overlapping frames, one frame over the whole signal, frames not aligned to seconds."""
    vocals, drums, bass, other = stems("vocals", "drums", "bass", "other")
    # left channel only: museval's cost is mostly its solves, (sources · channels · 512)³
    references = np.stack([vocals, drums + bass + other])[:, 22050:22050 + 3 * 44100, :1]
    estimates = realistic_estimates(references, seed=1)

    ours = bss_eval(references, estimates, window=window, hop=hop)
    theirs = museval.evaluate(references, estimates, win=window, hop=hop)

    assert_close_db(np.stack(ours), np.stack(theirs))


def test_museval_backend_is_museval():
    references = stems("vocals", "bass")[:, :2 * 44100, :1]
    estimates = realistic_estimates(references, seed=2)
    scores = bss_eval(references, estimates, backend="museval")
    np.testing.assert_array_equal(np.stack(scores), np.stack(museval.evaluate(references, estimates)))


def test_tensors_in_tensors_out_and_mono():
    references = stems("vocals", "bass")[:, :2 * 44100, 0]  # [sources, time]: one channel
    estimates = realistic_estimates(references, seed=3)
    scores = bss_eval(torch.from_numpy(references).float(), torch.from_numpy(estimates).float())
    assert isinstance(scores.sdr, torch.Tensor) and scores.sdr.dtype == torch.float64
    assert scores.sdr.shape == (2, 2)
    assert_close_db(torch.stack(tuple(scores)).numpy(), np.stack(museval.evaluate(references, estimates)))


@pytest.mark.parametrize("change", [-1000, 1000])
def test_wrong_length_estimates_are_padded_or_truncated_like_museval(change):
    references = stems("vocals", "bass")[:, :2 * 44100, :1]
    estimates = realistic_estimates(references, seed=4)
    if change < 0:
        estimates = estimates[:, :change]
    else:
        estimates = np.concatenate([estimates, estimates[:, :change]], axis=1)

    with pytest.warns(UserWarning, match="as museval does"):
        ours = bss_eval(references, estimates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = museval.evaluate(references, estimates)
    assert_close_db(np.stack(ours), np.stack(theirs))


def test_silent_source_and_shape_mismatch_are_refused():
    references = stems("vocals", "bass")[:, :44100]
    silent = references.copy()
    silent[1] = 0
    with pytest.raises(ValueError, match="estimated source 1 is all zeros"):
        bss_eval(references, silent)
    with pytest.raises(ValueError, match="reference source 1 is all zeros"):
        bss_eval(silent, references)
    with pytest.raises(ValueError, match="same"):
        bss_eval(references, references[:1])
    with pytest.raises(ValueError, match="backend"):
        bss_eval(references, references, backend="mir_eval")
