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


def test_museval_backend_names_museval_scores_and_agrees_with_the_fast_one():
    """``backend="museval"`` hands the arrays to museval: its four arrays come back under their
    names (museval returns SDR, ISR, SIR, SAR), and the fast backend agrees with them."""
    references = stems("vocals", "bass")[:, :2 * 44100, :1]
    estimates = realistic_estimates(references, seed=2)
    scores = bss_eval(references, estimates, backend="museval")
    sdr, isr, sir, sar = museval.evaluate(references, estimates)
    for name, expected in zip(("sdr", "isr", "sir", "sar"), (sdr, isr, sir, sar)):
        np.testing.assert_array_equal(getattr(scores, name), expected)
    assert not np.allclose(scores.sir, scores.sar)  # the names would matter if swapped
    assert_close_db(np.stack(bss_eval(references, estimates, backend="fast")), np.stack(scores))


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


def test_block_toeplitz_solver_matches_a_dense_solve(monkeypatch):
    """The Levinson-preconditioned solver on a real, ill-conditioned Gram matrix (the stems'
    correlations), and its fallback when a leading section is singular (a silent channel)."""
    import sys

    from waveunet.evaluate import toeplitz

    lagged_correlations = sys.modules["waveunet.evaluate.bss_eval"].lagged_correlations
    signals = torch.from_numpy(stems("vocals", "bass", "other")[:, :3 * 44100]).permute(0, 2, 1).reshape(6, -1)
    estimates = signals + 0.1 * torch.randn(signals.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    correlations = lagged_correlations(torch.cat([signals, estimates]), 6, 128)
    blocks = correlations[:6].permute(2, 0, 1)[None]  # [1, L, K, K]
    rhs = correlations[6:].permute(2, 1, 0)[None]  # [1, L, K, M]
    eigenvalues = torch.linalg.eigvalsh(toeplitz.dense(blocks)[0])
    assert eigenvalues[-1] / eigenvalues[0] > 1e6  # genuinely ill-conditioned

    def projection_error(blocks, rhs):
        """Largest relative energy of the difference between the filtered references with our
        filters and with a dense LU solve's (coefficients of ill-conditioned systems may differ,
        their projections may not)."""
        dense = toeplitz.dense(blocks)[0]
        expected = torch.linalg.solve(dense, rhs[0].reshape(-1, 6))
        error = toeplitz.solve_block_toeplitz(blocks, rhs)[0].reshape(-1, 6) - expected
        energy = torch.einsum("im,ij,jm->m", error, dense, error)
        return (energy / torch.einsum("im,ij,jm->m", expected, dense, expected)).max()

    assert projection_error(blocks, rhs) < 1e-16  # projections agree to 1e-8 in amplitude

    # A silent reference channel: museval's eps on the diagonal keeps the system solvable ...
    silent = blocks.clone()
    silent[..., 0, :] = 0
    silent[..., :, 0] = 0
    silent_rhs = rhs.clone()
    silent_rhs[..., 0, :] = 0
    silent[:, 0] += torch.finfo(torch.float64).eps * torch.eye(6, dtype=torch.float64)
    assert projection_error(silent, silent_rhs) < 1e-16
    assert (toeplitz.solve_block_toeplitz(silent, silent_rhs)[..., 0, :] == 0).all()
    # ... without it the recursion breaks down and the dense (least-squares) solve takes over.
    silent[:, 0] -= torch.finfo(torch.float64).eps * torch.eye(6, dtype=torch.float64)
    dense_solves = []
    monkeypatch.setattr(toeplitz, "dense_solve", lambda *args: dense_solves.append(args) or silent_rhs)
    toeplitz.solve_block_toeplitz(silent, silent_rhs)
    assert len(dense_solves) == 1
