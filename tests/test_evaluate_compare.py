"""``waveunet evaluate compare``: runs scored for real, museval's own JSON, statistics checked
against scipy directly, the box plot, and bad input."""

import json
import os
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import museval
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from PIL import Image
from scipy.stats import wilcoxon

from waveunet.cli import main
from waveunet.evaluate.compare import figure_size
from waveunet.evaluate.run import EvaluationConfig, evaluate_estimates
from waveunet.evaluate.tracks import open_references

DATA = Path(__file__).parent / "data"
TRACK = DATA / "musdb18hq-sample" / "train" / "Music Delta - 80s Rock"
RATE = 44100
SONGS = [f"song {i}" for i in range(5)]


def excerpt(name, start):
    """2 s of one real stem, left channel."""
    return sf.read(TRACK / f"{name}.wav")[0][start:start + 2 * RATE, :1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five songs (excerpts of the real track) and three systems: A leaks less than B on each,
    C is B with a different noise and misses the last song. Each run scored by ``waveunet``;
    a fourth folder holds museval's own JSON for system A."""
    root = tmp_path_factory.mktemp("compare")
    references = {}
    for i, song in enumerate(SONGS):
        start = i * RATE
        vocals = excerpt("vocals", start)
        accompaniment = excerpt("drums", start) + excerpt("bass", start) + excerpt("other", start)
        references[song] = {"vocals": vocals, "accompaniment": accompaniment}
        folder = root / "refs" / song
        folder.mkdir(parents=True)
        for name, audio in references[song].items():
            sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
    rng = np.random.default_rng(0)
    estimates = {}
    for system, leak in (("A", 0.05), ("B", 0.12), ("C", 0.12)):
        estimates[system] = {}
        for i, song in enumerate(SONGS):
            if system == "C" and i == len(SONGS) - 1:
                continue
            v, a = references[song]["vocals"], references[song]["accompaniment"]
            leak_i = leak * (1 + 0.3 * i)
            noise = 0.005 * rng.standard_normal(v.shape)
            estimates[system][song] = {"vocals": v + leak_i * a + noise, "accompaniment": a + leak_i * v - noise}
            folder = root / "est" / system / song
            folder.mkdir(parents=True)
            for name, audio in estimates[system][song].items():
                sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
        collection = open_references(references=root / "refs")
        evaluate_estimates(root / "est" / system, collection, EvaluationConfig(out=root / system), echo=lambda line: None)
    # museval's own files for system A, as eval_mus_track writes them (OUT/<subset>/<track>.json)
    for song in SONGS:
        track = SimpleNamespace(name=song, rate=RATE, subset="test", targets=OrderedDict(
            (name, SimpleNamespace(audio=audio)) for name, audio in references[song].items()))
        museval.eval_mus_track(track, {name: sf.read(root / "est" / "A" / song / f"{name}.wav", always_2d=True)[0]
                                       for name in ("vocals", "accompaniment")}, output_dir=str(root / "museval-A"))
    return root


def track_medians(run: Path, target: str) -> dict:
    """Each track's median SDR over frames, straight from the run's JSON files."""
    medians = {}
    for path in sorted(run.rglob("*.json")):
        if path.name == "summary.json":
            continue
        document = json.loads(path.read_text())
        frames = next(t for t in document["targets"] if t["name"] == target)["frames"]
        medians[path.stem] = float(np.nanmedian([float(f["metrics"]["SDR"]) for f in frames]))
    return medians


def test_compare_writes_medians_wilcoxon_and_a_box_plot(runs, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["evaluate", "compare", str(runs / "A"), str(runs / "B"), str(runs / "C"),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Warning: 1 track(s) not scored by every run, left out of the paired tests: song 4" in result.output
    document = json.loads((out / "compare.json").read_text())
    assert set(document["medians"]) == {"vocals", "accompaniment"}
    for target in ("vocals", "accompaniment"):
        per_run = {name: track_medians(runs / name, target) for name in "ABC"}
        for name in "ABC":
            assert document["medians"][target][name]["SDR"] == pytest.approx(np.median(list(per_run[name].values())), abs=1e-9)
        for test in (t for t in document["tests"] if t["target"] == target):
            a, b = per_run[test["a"]], per_run[test["b"]]
            common = sorted(a.keys() & b.keys())
            expected = wilcoxon([a[s] for s in common], [b[s] for s in common])
            assert test["tracks"] == len(common) == (4 if "C" in (test["a"], test["b"]) else 5)
            assert test["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
            assert test["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
            assert test["median_difference"] == pytest.approx(np.median([a[s] - b[s] for s in common]), abs=1e-9)
    a_vs_b = next(t for t in document["tests"] if (t["target"], t["a"], t["b"]) == ("vocals", "A", "B"))
    assert a_vs_b["median_difference"] > 0 and a_vs_b["p_value"] < 0.1  # A leaks less on every song
    assert document["unpaired_tracks"] == {"vocals": ["song 4"], "accompaniment": ["song 4"]}
    csv_lines = (out / "compare.csv").read_text().splitlines()
    assert csv_lines[0] == "target,system,tracks,SDR_median,SIR_median,ISR_median,SAR_median" and len(csv_lines) == 7
    assert "vocals:" in result.output and "Wilcoxon" in result.output

    image = Image.open(out / "boxplot.png")
    image.load()
    assert image.format == "PNG" and image.size == figure_size(2, 3)
    pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 50 and pixels.max() > 200 and len(np.unique(pixels)) > 20  # drawn, not blank


def test_museval_json_from_anywhere_compares_with_ours(runs, tmp_path):
    """museval's own JSON (eval_mus_track's layout) is a run too, and its medians are the ones we
    wrote for the same estimates (museval there is well-posed: 1e-3 dB)."""
    result = CliRunner().invoke(main, ["evaluate", "compare", str(runs / "museval-A"), str(runs / "A"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    medians = json.loads((tmp_path / "out" / "compare.json").read_text())["medians"]
    for target in ("vocals", "accompaniment"):
        for metric in ("SDR", "SIR", "ISR", "SAR"):
            assert medians[target]["museval-A"][metric] == pytest.approx(medians[target]["A"][metric], abs=1e-3)


def bad(tmp_path, *runs):
    out = tmp_path / "out"
    return CliRunner().invoke(main, ["evaluate", "compare", *map(str, runs), "--out", str(out)]), out


def test_runs_with_different_targets_are_refused(runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    document = json.loads((runs / "A" / "song 0.json").read_text())
    document["targets"][1]["name"] = "drums"
    (other / "song 0.json").write_text(json.dumps(document))
    result, out = bad(tmp_path, runs / "A", other)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {other}: scores targets vocals, drums but {runs / 'A'} scores vocals, accompaniment")
    assert not out.exists()


def test_an_empty_run_folder_is_refused(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result, out = bad(tmp_path, runs / "A", empty)
    assert result.exit_code == 1 and result.output == f"Error: {empty}: no museval score files (*.json) in this run folder\n"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # nothing written, nothing removed


@pytest.mark.parametrize("document, reason", [
    ({"targets": [{"name": "vocals", "frames": [{"time": 0, "duration": 1, "metrics": {"SDR": "high"}}]}]}, "is not of type 'number'"),
    ({"targets": "vocals"}, "is not of type 'array'"),
    ({"scores": [1, 2, 3]}, "no 'targets'"),
    ([1, 2, 3], "is not of type 'object'"),
])
def test_a_json_that_is_not_museval_schema_is_refused(runs, tmp_path, document, reason):
    other = tmp_path / "other"
    other.mkdir()
    (other / "song 0.json").write_text(json.dumps(document))
    result, out = bad(tmp_path, runs / "A", other)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {other / 'song 0.json'}: not a museval score file (")
    assert reason in result.output
    assert not out.exists()


def test_compare_needs_two_runs_and_keeps_earlier_results(runs, tmp_path):
    result, out = bad(tmp_path, runs / "A")
    assert result.exit_code == 1 and "at least two runs" in result.output
    first, out = bad(tmp_path, runs / "A", runs / "B")
    assert first.exit_code == 0
    stamp = (out / "compare.json").stat().st_mtime_ns
    again, out = bad(tmp_path, runs / "B", runs / "A")
    assert again.exit_code == 1 and "already exists (use --force" in again.output
    assert (out / "compare.json").stat().st_mtime_ns == stamp
    assert not [p for p in os.listdir(out) if p.startswith(".")]
