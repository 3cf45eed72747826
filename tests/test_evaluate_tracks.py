"""Track evaluation: museval's grouping and JSON, the summary against museval's EvalStore, resuming,
and bad input."""

import json
import os
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import museval
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from museval.aggregate import EvalStore, json2df

from waveunet.cli import main
from waveunet.evaluate.run import EvaluationConfig, evaluate_estimates, scores_path
from waveunet.evaluate.scores import TrackScores, read_scores, write_scores
from waveunet.evaluate.summary import METRICS, summarize
from waveunet.evaluate.tracks import open_references

DATA = Path(__file__).parent / "data"
MUSDB_HQ = DATA / "musdb18hq-sample"
TRACK = "Music Delta - 80s Rock"
SOURCES = ("vocals", "drums", "bass", "other")
RATE = 44100
SCHEMA = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())


def read(path: Path) -> np.ndarray:
    """[time, channels] float64, as musdb and museval read audio."""
    return sf.read(path, always_2d=True)[0]


def write_track(folder: Path, waveforms: dict, rate: int = RATE, subtype: str = "FLOAT") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in waveforms.items():
        sf.write(folder / f"{name}.wav", audio, rate, subtype=subtype)


@pytest.fixture(scope="module")
def short_track(tmp_path_factory):
    """3 s of the real track's left channel (museval's cost grows with the channel count cubed)
    as a reference folder, and realistic estimates of its four sources and the accompaniment."""
    root = tmp_path_factory.mktemp("short")
    stems = {name: sf.read(MUSDB_HQ / "train" / TRACK / f"{name}.wav")[0][RATE:4 * RATE, :1] for name in SOURCES}
    write_track(root / "refs" / TRACK, stems)
    targets = dict(stems, accompaniment=stems["drums"] + stems["bass"] + stems["other"])
    rng = np.random.default_rng(0)
    estimates = {name: audio + 0.01 * rng.standard_normal(audio.shape) + 0.03 * targets["vocals" if name != "vocals" else "other"]
                 for name, audio in targets.items()}
    estimates["bass"][RATE:2 * RATE] = 0  # a silent second: NaN frame in the joint problem
    write_track(root / "est" / TRACK, estimates)
    return SimpleNamespace(root=root, targets=targets, refs=root / "refs", est=root / "est")


def museval_scores(targets: dict, estimates: dict) -> dict:
    """museval's eval_mus_track on a stand-in for a musdb track (targets in musdb's order)."""
    track = SimpleNamespace(name=TRACK, rate=RATE, subset="test",
                            targets=OrderedDict((name, SimpleNamespace(audio=audio)) for name, audio in targets.items()))
    return museval.eval_mus_track(track, estimates).scores


def assert_same_scores(ours: dict, theirs: dict) -> None:
    assert [t["name"] for t in ours["targets"]] == [t["name"] for t in theirs["targets"]]
    for mine, yours in zip(ours["targets"], theirs["targets"]):
        assert len(mine["frames"]) == len(yours["frames"])
        for a, b in zip(mine["frames"], yours["frames"]):
            assert a["time"] == float(b["time"]) and a["duration"] == float(b["duration"])
            for metric in METRICS:
                x, y = float(a["metrics"][metric]), float(b["metrics"][metric])
                assert (np.isnan(x) and np.isnan(y)) or abs(x - y) < 0.01, (mine["name"], metric, x, y)


def test_track_json_is_museval_eval_mus_track(short_track, tmp_path):
    """Four sources and the accompaniment: museval scores drums/bass/other with the vocals, and
    vocals/accompaniment as a problem of their own; so do we, and the JSON passes its schema."""
    collection = open_references(references=short_track.refs)
    result = evaluate_estimates(short_track.est, collection, EvaluationConfig(out=tmp_path), echo=lambda line: None)
    ours = json.loads(scores_path(tmp_path, TRACK, None).read_text())
    jsonschema.validate(ours, SCHEMA)

    estimates = {name: read(short_track.est / TRACK / f"{name}.wav") for name in short_track.targets}
    theirs = museval_scores(short_track.targets, estimates)
    assert_same_scores(ours, theirs)
    assert [t["name"] for t in ours["targets"]] == ["drums", "bass", "other", "vocals", "accompaniment"]
    assert np.isnan(result.scores[0].targets["drums"]["SDR"][1])  # the silent bass second
    assert not np.isnan(result.scores[0].targets["vocals"]["SDR"]).any()  # paired with accompaniment only


def test_summary_aggregation_is_museval_evalstore(tmp_path):
    """Median over frames then median (and mean) over tracks, NaN skipped, as EvalStore computes
    from the same JSON files."""
    rng = np.random.default_rng(0)
    tracks = []
    for t in range(5):
        frames = 4 + t
        targets = {}
        for target in ("vocals", "accompaniment", "drums")[: 2 + t % 2]:
            metrics = {m: (rng.normal(5, 4, frames)).tolist() for m in METRICS}
            metrics["SDR"][t % frames] = float("nan")
            if t == 3:
                metrics["SIR"] = [float("nan")] * frames  # a track with no usable SIR
            metrics["ISR"][0] = float("inf")  # museval stores infinities as NaN
            targets[target] = metrics
        tracks.append(TrackScores(f"track {t}", targets))
    store, mean_store = EvalStore(), EvalStore(tracks_agg="mean")
    read_back = []
    for track in tracks:
        path = tmp_path / "test" / f"{track.track}.json"
        write_scores(track, path)
        jsonschema.validate(json.loads(path.read_text()), SCHEMA)
        read_back.append(read_scores(path, track.track))
        store.add_track(json2df(json.loads(path.read_text()), track.track))
        mean_store.add_track(json2df(json.loads(path.read_text()), track.track))

    summary = {row.target: row for row in summarize(read_back)}
    medians = store.agg_frames_tracks_scores()
    means = mean_store.agg_frames_tracks_scores()
    assert set(summary) == {"vocals", "accompaniment", "drums"}
    for (target, metric), value in medians.items():
        np.testing.assert_allclose(summary[target].median[metric], value, rtol=0, atol=1e-9)
        np.testing.assert_allclose(summary[target].mean[metric], means[(target, metric)], rtol=0, atol=1e-9)
    assert summary["drums"].tracks == 2

    on_disk = EvalStore()
    on_disk.add_eval_dir(tmp_path)  # museval's own reader finds and parses our files
    assert len(on_disk.df) == len(store.df)


def test_cli_writes_summary_and_resumes(short_track, tmp_path):
    out = tmp_path / "out"
    args = ["evaluate", "--estimates", str(short_track.est), "--references", str(short_track.refs),
            "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "SDR median" in result.output and "accompaniment" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["targets"]) == {"drums", "bass", "other", "vocals", "accompaniment"}
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0] == "target,metric,median,mean,tracks" and len(csv_lines) == 1 + 5 * 4

    track_json = scores_path(out, TRACK, None)
    stamp = track_json.stat().st_mtime_ns
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "skipped" in again.output
    assert track_json.stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text()) == summary

    forced = CliRunner().invoke(main, args + ["--force", "--backend", "museval"])
    assert forced.exit_code == 0, forced.output
    assert_same_scores(json.loads(track_json.read_text()),
                       museval_scores(short_track.targets,
                                      {n: read(short_track.est / TRACK / f"{n}.wav") for n in short_track.targets}))


def test_musdb_layout_and_wrong_length_estimates(tmp_path):
    """MUSDB18-HQ references, JSON under OUT/<subset>/ (museval's layout); estimates a little
    short are zero-padded with a warning naming the file."""
    track = sf.read(MUSDB_HQ / "train" / TRACK / "vocals.wav")[0]
    acc = sum(sf.read(MUSDB_HQ / "train" / TRACK / f"{n}.wav")[0] for n in ("drums", "bass", "other"))
    rng = np.random.default_rng(1)
    estimates = {"vocals": track + 0.05 * rng.standard_normal(track.shape),
                 "accompaniment": acc + 0.05 * rng.standard_normal(track.shape)}
    write_track(tmp_path / "est" / TRACK, {n: a[:-500] for n, a in estimates.items()})
    collection = open_references(musdb=MUSDB_HQ, is_wav=True, subset="train")
    with pytest.warns(UserWarning, match=r"\.wav: 299532 samples but the reference has 300032: zero-padded") as caught:
        result = evaluate_estimates(tmp_path / "est", collection, EvaluationConfig(out=tmp_path / "out"),
                                    echo=lambda line: None)
    assert sorted(Path(str(w.message).split(": ")[0]).name for w in caught) == ["accompaniment.wav", "vocals.wav"]
    assert (tmp_path / "out" / "train" / f"{TRACK}.json").is_file()
    assert [t.target for t in result.summary] == ["vocals", "accompaniment"]
    assert all(len(frames["SDR"]) == 6 for frames in result.scores[0].targets.values())


def bad_estimates(tmp_path, short_track, change):
    """A copy of the estimates with one ``change`` applied; returns the CLI's result."""
    est = tmp_path / "est"
    estimates = {n: read(short_track.est / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")}
    change(estimates)
    write_track(est / TRACK, estimates)
    return CliRunner().invoke(main, ["evaluate", "--estimates", str(est), "--references", str(short_track.refs),
                                     "--out", str(tmp_path / "out"), "--device", "cpu"])


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(vocals=np.repeat(e["vocals"], 2, axis=1)), "vocals.wav: 2 channel(s) but the reference has 1"),
    (lambda e: e.pop("accompaniment"), "only vocals estimated; BSSEval needs two or more"),
    (lambda e: e.update(piano=e["vocals"]), "piano.wav: the reference track has no target 'piano'"),
    (lambda e: e.update(vocals=0 * e["vocals"]), "the vocals estimate is silent throughout"),
])
def test_bad_estimates_are_one_line_errors(short_track, tmp_path, change, message):
    result = bad_estimates(tmp_path, short_track, change)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output


def test_sample_rate_mismatch_and_missing_track(short_track, tmp_path):
    est = tmp_path / "est"
    audio = {n: read(short_track.est / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")}
    write_track(est / TRACK, audio, rate=22050)
    args = ["evaluate", "--estimates", str(est), "--references", str(short_track.refs), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "22050 Hz but the reference is 44100 Hz" in result.output

    result = CliRunner().invoke(main, args + ["--tracks", "No Such Song"])
    assert result.exit_code == 1 and "no track named 'No Such Song'" in result.output
    os.rename(est / TRACK, est / "elsewhere")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no folder named after a track" in result.output
    result = CliRunner().invoke(main, ["evaluate", "--references", str(short_track.refs), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "either --model M" in result.output


def test_a_failing_track_keeps_the_scores_already_written(short_track, tmp_path):
    """Two tracks, the second broken: the first one's JSON is written and kept."""
    refs, est = tmp_path / "refs", tmp_path / "est"
    refs.mkdir()
    for name in ("a", "b"):
        os.symlink(short_track.refs / TRACK, refs / name, target_is_directory=True)
        audio = {n: read(short_track.est / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")}
        if name == "b":
            audio["vocals"] = audio["vocals"][:, [0, 0]]
        write_track(est / name, audio)
    result = CliRunner().invoke(main, ["evaluate", "--estimates", str(est), "--references", str(refs),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "channel(s)" in result.output
    assert read_scores(tmp_path / "out" / "a.json", "a").targets.keys() == {"vocals", "accompaniment"}
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_model_mode_scores_the_models_separation(tmp_path):
    """--model separates each mixture and scores what museval scores for those estimates."""
    import musdb
    import torch

    import waveunet
    from waveunet.separation import separate

    result = CliRunner().invoke(main, ["evaluate", "--model", "demo", "--musdb", str(MUSDB_HQ), "--is-wav",
                                       "--subset", "train", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ours = json.loads((tmp_path / "train" / f"{TRACK}.json").read_text())
    jsonschema.validate(ours, SCHEMA)

    track = musdb.DB(root=str(MUSDB_HQ), is_wav=True, subsets="train").tracks[0]
    model = waveunet.load_model("demo")
    estimates = separate(model, torch.from_numpy(track.audio.T).float(), track.rate, device="cpu")
    theirs = museval.eval_mus_track(track, {name: e.numpy().T.astype(float) for name, e in estimates.items()})
    assert [t["name"] for t in ours["targets"]] == ["vocals", "accompaniment"]
    assert_same_scores(ours, theirs.scores)
