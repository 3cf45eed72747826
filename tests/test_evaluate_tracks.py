"""Track evaluation: museval's grouping and JSON, the summary (cSDR and uSDR) against museval's
EvalStore and a direct computation, ill-conditioned frames flagged in the JSON and the summary,
tracks found in whichever MUSDB18 subset holds them, --jobs, resuming, and bad input."""

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
                assert (np.isnan(x) and np.isnan(y)) or abs(x - y) < 1e-3, (mine["name"], metric, x, y)


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
    assert "cSDR" in result.output and "uSDR" in result.output and "accompaniment" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["targets"]) == {"drums", "bass", "other", "vocals", "accompaniment"}
    assert summary["targets"]["vocals"]["cSDR"] == summary["targets"]["vocals"]["median"]["SDR"]
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("target,tracks,cSDR,uSDR,SDR_median,SDR_mean") and len(csv_lines) == 1 + 5

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
    assert result.exit_code == 1 and result.output.startswith(f"Error: {est / 'elsewhere'}: no track of that name")
    (est / "elsewhere").rename(est / ".hidden")  # hidden folders are not estimates
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
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]


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


def test_wrong_length_estimates_give_one_plain_warning_line(tmp_path):
    """Issue 13: one line per file naming it and the lengths, not Python's warning with source."""
    vocals = sf.read(MUSDB_HQ / "train" / TRACK / "vocals.wav")[0]
    acc = sum(sf.read(MUSDB_HQ / "train" / TRACK / f"{n}.wav")[0] for n in ("drums", "bass", "other"))
    write_track(tmp_path / "est" / TRACK, {"vocals": 0.9 * vocals[:-500] + 0.1 * acc[:-500],
                                           "accompaniment": np.concatenate([acc, acc[:100]])})
    result = CliRunner().invoke(main, ["evaluate", "--estimates", str(tmp_path / "est"), "--musdb", str(MUSDB_HQ),
                                       "--is-wav", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    warnings_printed = [line for line in result.output.splitlines() if "samples but the reference" in line]
    folder = tmp_path / "est" / TRACK
    assert warnings_printed == [
        f"Warning: {folder / 'accompaniment.wav'}: 300132 samples but the reference has 300032: truncated, as museval does",
        f"Warning: {folder / 'vocals.wav'}: 299532 samples but the reference has 300032: zero-padded at the end, as museval does"]
    assert "UserWarning" not in result.output and "warnings.warn" not in result.output


def numpy_global_sdr(reference, estimate):
    """The MDX challenge's SDR of a whole track, written out in numpy."""
    delta = 1e-7
    return 10 * np.log10((np.sum(reference ** 2) + delta) / (np.sum((reference - estimate) ** 2) + delta))


def test_usdr_is_the_mdx_global_sdr_and_csdr_the_median_of_medians(tmp_path):
    """Two copies of the real track with different estimates: each target's uSDR in the JSON is the
    MDX formula computed directly in numpy, the summary's uSDR their mean over tracks, cSDR the
    median over tracks of the frame medians."""
    refs, est = tmp_path / "refs", tmp_path / "est"
    refs.mkdir()
    stems = {n: sf.read(MUSDB_HQ / "train" / TRACK / f"{n}.wav")[0] for n in SOURCES}
    accompaniment = stems["drums"] + stems["bass"] + stems["other"]
    expected = {"vocals": [], "accompaniment": []}
    for i, leak in enumerate((0.1, 0.3)):
        os.symlink(MUSDB_HQ / "train" / TRACK, refs / f"song {i}", target_is_directory=True)
        estimates = {"vocals": stems["vocals"] + leak * accompaniment, "accompaniment": accompaniment + leak / 2 * stems["vocals"]}
        write_track(est / f"song {i}", estimates)
        for target, reference in (("vocals", stems["vocals"]), ("accompaniment", accompaniment)):
            expected[target].append(numpy_global_sdr(reference, read(est / f"song {i}" / f"{target}.wav")))
    result = CliRunner().invoke(main, ["evaluate", "--estimates", str(est), "--references", str(refs),
                                       "--out", str(tmp_path / "out"), "--device", "cpu", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["targets"]
    for target, values in expected.items():
        for i, value in enumerate(values):
            document = json.loads((tmp_path / "out" / f"song {i}.json").read_text())
            stored = next(t for t in document["targets"] if t["name"] == target)
            assert stored["uSDR"] == pytest.approx(value, abs=1e-5)
            jsonschema.validate(document, SCHEMA)
        assert summary[target]["uSDR"] == pytest.approx(np.mean(values), abs=1e-5)
        medians = [np.nanmedian([f["metrics"]["SDR"] for f in next(
            t for t in json.loads((tmp_path / "out" / f"song {i}.json").read_text())["targets"] if t["name"] == target)["frames"]])
            for i in range(2)]
        assert summary[target]["cSDR"] == pytest.approx(np.median(medians), abs=1e-9)
    assert summary["vocals"]["uSDR"] != summary["vocals"]["cSDR"]


def mp3_track(folder: Path, name: str, audio: dict) -> None:
    """Write ``audio`` through ffmpeg's MP3 encoder at 128 kb/s and back to float WAV."""
    import subprocess
    import tempfile

    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for stem, samples in audio.items():
            source, coded = Path(scratch) / f"{stem}.wav", Path(scratch) / f"{stem}.mp3"
            sf.write(source, samples, RATE, subtype="FLOAT")
            for args in (["-i", str(source), "-b:a", "128k", str(coded)],
                         ["-i", str(coded), "-c:a", "pcm_f32le", str(target / f"{stem}.wav")]):
                subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def test_ill_conditioned_frames_are_flagged_in_the_json_and_the_summary(tmp_path):
    """MP3-coded references and estimates: the frames where museval's value moves under a 1e-9
    rescaling are flagged in the track's JSON with their sensitivity, each target carries its
    condition number, and the summary counts the flagged frames; museval's readers still read it."""
    stems = {n: sf.read(MUSDB_HQ / "train" / TRACK / f"{n}.wav")[0][:3 * RATE] for n in SOURCES}
    accompaniment = stems["drums"] + stems["bass"] + stems["other"]
    rng = np.random.default_rng(0)
    mp3_track(tmp_path / "refs", TRACK, {"vocals": stems["vocals"], "accompaniment": accompaniment})
    mp3_track(tmp_path / "est", TRACK, {"vocals": 0.8 * stems["vocals"] + 0.15 * accompaniment
                                        + 0.01 * rng.standard_normal(accompaniment.shape),
                                        "accompaniment": 0.9 * accompaniment + 0.1 * stems["vocals"]})
    result = CliRunner().invoke(main, ["evaluate", "--estimates", str(tmp_path / "est"), "--references",
                                       str(tmp_path / "refs"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    document = json.loads(scores_path(tmp_path / "out", TRACK, None).read_text())
    jsonschema.validate(document, SCHEMA)
    assert len(json2df(document, TRACK)) == 2 * 3 * 4  # museval's reader ignores our keys

    refs = np.stack([read(tmp_path / "refs" / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")])
    ests = np.stack([read(tmp_path / "est" / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")])
    theirs = np.stack(museval.evaluate(refs, ests))
    moved = np.abs(theirs - np.stack(museval.evaluate(refs * (1 + 1e-9), ests)))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["targets"]
    for j, target in enumerate(document["targets"]):
        assert target["conditioning"]["condition"] > 1e12
        flagged = np.array(["ill_conditioned" in frame for frame in target["frames"]])
        assert flagged[(moved[:, j] > 1e-3).any(axis=0)].all()
        for frame in target["frames"]:
            if "ill_conditioned" in frame:
                assert set(frame["ill_conditioned"]["sensitivity_dB"]) == {"ISR", "SIR", "SAR"}
        assert summary[target["name"]]["ill_conditioned"]["frames"] == flagged.sum() > 0
        assert summary[target["name"]]["ill_conditioned"]["tracks"] == [TRACK]
    assert "ill-cond. frames" in result.output


def test_tracks_are_found_in_whichever_subset_holds_them(tmp_path):
    """A root with train/ and test/ (and one with train/ only): estimates are scored against the
    subset that holds each track, their JSON filed under it; a folder matching no track is one
    error naming it."""
    root = tmp_path / "musdb"
    (root / "test").mkdir(parents=True)
    os.symlink(MUSDB_HQ / "train", root / "train", target_is_directory=True)
    os.symlink(MUSDB_HQ / "train" / TRACK, root / "test" / "Another Song", target_is_directory=True)
    vocals = sf.read(MUSDB_HQ / "train" / TRACK / "vocals.wav")[0][:RATE * 3]
    acc = sum(sf.read(MUSDB_HQ / "train" / TRACK / f"{n}.wav")[0] for n in ("drums", "bass", "other"))
    estimates = {"vocals": vocals + 0.1 * acc[:len(vocals)], "accompaniment": acc[:len(vocals)] + 0.1 * vocals}
    for name in (TRACK, "Another Song"):
        write_track(tmp_path / "est" / name, {k: np.pad(v, ((0, len(acc) - len(v)), (0, 0))) for k, v in estimates.items()})
    args = ["evaluate", "--estimates", str(tmp_path / "est"), "--musdb", str(root), "--is-wav", "--device", "cpu"]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "train" / f"{TRACK}.json").is_file()
    assert (tmp_path / "out" / "test" / "Another Song.json").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["targets"]["vocals"]["tracks"] == 2

    only_train = CliRunner().invoke(main, ["evaluate", "--estimates", str(tmp_path / "est"), "--musdb", str(MUSDB_HQ),
                                           "--is-wav", "--tracks", TRACK, "--out", str(tmp_path / "o2"), "--device", "cpu"])
    assert only_train.exit_code == 0, only_train.output
    assert (tmp_path / "o2" / "train" / f"{TRACK}.json").is_file()

    (tmp_path / "est" / "Not A Song").mkdir()
    unknown = CliRunner().invoke(main, args + ["--out", str(tmp_path / "o3")])
    assert unknown.exit_code == 1
    assert unknown.output.startswith(f"Error: {tmp_path / 'est' / 'Not A Song'}: no track of that name in MUSDB18-HQ")
    assert "Traceback" not in unknown.output and not (tmp_path / "o3").exists()


def test_jobs_share_the_cpu_threads_and_give_the_same_scores(short_track, tmp_path, monkeypatch):
    """--jobs N: each of N evaluations at once computes on cores // N torch threads (set in its own
    thread: torch's thread count is per thread), its systems' solves included (one after the
    other, on the evaluation's share); the scores are those of one job."""
    import threading

    import torch

    from waveunet.evaluate import bss_eval as _  # noqa: F401  (the module, for monkeypatch)
    from waveunet.evaluate.toeplitz import NormalSystem

    cores = torch.get_num_threads()
    seen = []
    original = NormalSystem.solve_determined

    def recording(self):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return original(self)

    monkeypatch.setattr(NormalSystem, "solve_determined", recording)
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("a", "b", "c"):
        os.symlink(short_track.refs / TRACK, refs / name, target_is_directory=True)
        os.symlink(short_track.est / TRACK, tmp_path / name, target_is_directory=True)
    est = tmp_path / "est"
    est.mkdir()
    for name in ("a", "b", "c"):
        os.rename(tmp_path / name, est / name)
    outputs = []
    for jobs in ("1", "3"):
        result = CliRunner().invoke(main, ["evaluate", "--estimates", str(est), "--references", str(refs),
                                           "--out", str(tmp_path / f"out{jobs}"), "--jobs", jobs, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append([json.loads((tmp_path / f"out{jobs}" / f"{n}.json").read_text()) for n in ("a", "b", "c")])
        counts = [count for _, count in seen]
        share = max(1, cores // int(jobs))
        # two problems per track (museval pairs vocals with accompaniment), each a joint and an own system
        assert max(counts) <= share and len(seen) == 3 * 2 * 2, seen
        seen.clear()
    assert outputs[0] == outputs[1]
    assert torch.get_num_threads() == cores


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_fast_backend_on_cuda_matches_the_cpu(short_track):
    """The fast backend on a GPU gives the CPU's scores (float64 there too)."""
    import torch

    from waveunet.evaluate.bss_eval import evaluate_images

    refs = np.stack([short_track.targets["vocals"], short_track.targets["accompaniment"]])
    ests = np.stack([read(short_track.est / TRACK / f"{n}.wav") for n in ("vocals", "accompaniment")])
    on_cpu = evaluate_images(refs, ests, device="cpu")
    on_gpu = evaluate_images(torch.from_numpy(refs).cuda(), torch.from_numpy(ests).cuda())
    np.testing.assert_allclose(torch.stack(tuple(on_gpu.scores)).cpu().numpy(), np.stack(on_cpu.scores), atol=1e-6)
    np.testing.assert_array_equal(on_gpu.conditioning.ill_conditioned, on_cpu.conditioning.ill_conditioned)
