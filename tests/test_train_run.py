"""Short real training runs on the bundled track (WAV, .stem.mp4, an mp3 track folder), run-folder
conventions, errors, and resuming an interrupted run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from waveunet.audio import read_audio, write_audio
from waveunet import load_model
from waveunet.checkpoint import read_checkpoint
from waveunet.cli import main
from waveunet.train.launch import train_from_recipe

from helpers import TINY_MODEL

DATA = Path(__file__).resolve().parent / "data"
TRACK = "Music Delta - 80s Rock"

TRAIN = """
[train]
batch_size = 4
epoch_size = 3
workers = 0
max_steps = 6
valid_batch_size = 64
log_every = 2

[train.optimizer]
lr = 1e-3
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def write_recipe(folder: Path, data: str, model: str = TINY_MODEL, train: str = TRAIN, cache: Path | None = None) -> Path:
    cache_line = f'cache_dir = "{cache}"\n' if cache else ""
    path = folder / "recipe.toml"
    path.write_text(model + "\n[data]\n" + data + cache_line + "\n[augmentation]\ngain = true\n" + train)
    return path


def hq_recipe(folder: Path, cache: Path, **kwargs) -> Path:
    data = f'format = "musdb-hq"\nroot = "{DATA / "musdb18hq-sample"}"\ntrain_split = "all"\nvalid_split = "all"\n'
    return write_recipe(folder, data, cache=cache, **kwargs)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def check_run_folder(run: Path, validations: int) -> None:
    records = metrics(run)
    assert len(records) == validations
    for record in records:
        assert {"step", "epoch", "round", "train_loss", "valid_loss", "lr"} <= set(record)
        assert record["train_loss"] > 0 and record["valid_loss"] > 0
    assert [r["epoch"] for r in records] == list(range(1, validations + 1))
    assert (run / "config.toml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    last = read_checkpoint(run / "checkpoints" / "last.pt", full=True)
    assert last["training"]["progress"]["step"] == records[-1]["step"]
    assert "optimizer" in last["training"] and "rng" in last["training"]
    load_model(run / "checkpoints" / "last.pt")  # the training state keeps last.pt weights_only-loadable
    best = read_checkpoint(run / "checkpoints" / "best.pt")
    assert "training" not in best  # the best model alone: small, and loadable with weights_only
    assert best["metadata"]["valid_loss"] == min(r["valid_loss"] for r in records)


def separates(checkpoint: Path) -> None:
    model = load_model(checkpoint)
    assert model.metadata["step"] > 0
    mixture = torch.rand(1, model.config.channels, model.input_length) - 0.5
    with torch.no_grad():
        estimates = model(mixture)
    assert estimates.shape == (1, len(model.config.sources), model.config.channels, model.output_length)
    assert torch.isfinite(estimates).all()


def test_cli_trains_on_the_bundled_wav_track(tmp_path, cache_dir):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(hq_recipe(tmp_path, cache_dir)), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "round 1 epoch 2 step 6" in result.output
    check_run_folder(run, validations=2)
    separates(run / "checkpoints" / "best.pt")
    assert read_checkpoint(run / "checkpoints" / "best.pt")["metadata"]["training_data"].startswith("MUSDB18-HQ")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"audio": 0})
    events.Reload()
    assert {"loss/train", "loss/valid", "learning_rate"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("loss/valid")) == 2
    assert {"mixture", "vocals/estimate", "vocals/target", "accompaniment/estimate"} <= {
        tag.split("/", 1)[1] for tag in events.Tags()["audio"]}


def test_trains_on_the_bundled_stem_mp4_track(tmp_path, cache_dir):
    if not shutil.which("ffmpeg"):
        pytest.skip("decoding .stem.mp4 needs ffmpeg")
    data = f'format = "musdb"\nroot = "{DATA / "musdb18-sample"}"\ntrain_split = "all"\nvalid_split = "all"\n'
    result = train_from_recipe(write_recipe(tmp_path, data, cache=cache_dir), tmp_path / "run", progress=False)
    assert result.step == 6 and result.stopped_by == "train.max_steps = 6"
    check_run_folder(tmp_path / "run", validations=2)
    separates(tmp_path / "run" / "checkpoints" / "best.pt")


@pytest.fixture(scope="module")
def mp3_tracks(tmp_path_factory) -> Path:
    """Two track folders of mp3 stems (no mixture file) cut from the bundled track."""
    root = tmp_path_factory.mktemp("mp3-tracks")
    stems = {name: read_audio(DATA / "musdb18hq-sample" / "train" / TRACK / f"{name}.wav")[0]
             for name in ("vocals", "drums", "bass", "other")}
    half = next(iter(stems.values())).shape[-1] // 2
    for index, part in enumerate((slice(0, half), slice(half, None))):
        (root / f"song-{index}").mkdir()
        for name, audio in stems.items():
            write_audio(root / f"song-{index}" / f"{name}.mp3", audio[:, part], 44100, format="mp3")
    assert sf.info(str(root / "song-0" / "vocals.mp3")).format == "MP3"
    return root


def test_trains_four_sources_on_an_mp3_track_folder(tmp_path, cache_dir, mp3_tracks):
    model = TINY_MODEL.replace('preset = "M4"', 'preset = "M6"')
    result = train_from_recipe(write_recipe(tmp_path, f'format = "folder"\nroot = "{mp3_tracks}"\n', model=model,
                                            cache=cache_dir), tmp_path / "run", progress=False)
    assert result.step == 6
    check_run_folder(tmp_path / "run", validations=2)
    assert load_model(tmp_path / "run" / "checkpoints" / "best.pt").config.sources == ("bass", "drums", "other", "vocals")


def test_run_folder_rules(tmp_path, cache_dir):
    recipe, run = hq_recipe(tmp_path, cache_dir, train=TRAIN.replace("max_steps = 6", "max_steps = 3")), tmp_path / "run"
    train_from_recipe(recipe, run, progress=False)
    assert len(metrics(run)) == 1

    runner = CliRunner()
    result = runner.invoke(main, ["train", str(recipe), "--out", str(run)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {run}: holds another run; use --resume to continue it "
                                                  f"or --force to replace it"]

    result = runner.invoke(main, ["train", str(recipe), "--out", str(run), "--resume", "--set", "train.optimizer.lr=1"])
    assert result.exit_code == 1 and "train.optimizer.lr = 0.001, the recipe now says 1" in result.output
    assert len(result.output.strip().splitlines()) == 1

    result = runner.invoke(main, ["train", str(recipe), "--out", str(tmp_path / "fresh"), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output

    (run / "keep.txt").write_text("not ours")
    train_from_recipe(recipe, run, ["train.max_steps=6"], force=True, progress=False)
    assert [r["step"] for r in metrics(run)] == [3, 6]  # a fresh run, not a continuation
    assert (run / "keep.txt").is_file()  # --force removes the run's files only


@pytest.mark.parametrize("override, message", [
    ('data.root="/no/such/musdb"', "/no/such/musdb/train: MUSDB18 folder not found"),
    ('model.sources=["piano", "vocals"]', "has no source 'piano'"),
])
def test_data_errors_stop_before_the_run_folder_exists(tmp_path, cache_dir, override, message):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(hq_recipe(tmp_path, cache_dir)), "--out", str(run), "--set", override])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not run.exists()


def test_resumed_runs_equal_the_uninterrupted_run(tmp_path, cache_dir):
    """Interrupted mid-epoch in round 1 and again in the fine-tuning round, the run ends with the
    same losses and weights as one that ran straight through.

    ``min_delta = 1`` makes every validation after the first a failure to improve, so with
    ``patience = 1`` the run switches to the fine-tuning round after epoch 2 (step 8) and ends
    after epoch 3 (step 8 + 4 = 12).
    """
    train = TRAIN.replace("epoch_size = 3", "epoch_size = 4").replace("max_steps = 6", "max_steps = 0") + """
[train.early_stopping]
patience = 1
min_delta = 1.0
"""
    recipe = hq_recipe(tmp_path, cache_dir, train=train)
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    result = train_from_recipe(recipe, whole, progress=False)
    assert (result.finished, result.step, result.round) == (True, 12, 2)

    assert train_from_recipe(recipe, pieces, ["train.max_steps=6"], progress=False).step == 6
    assert train_from_recipe(recipe, pieces, ["train.max_steps=10"], resume=True, progress=False).step == 10
    assert read_checkpoint(pieces / "checkpoints" / "last.pt", full=True)["training"]["progress"]["round"] == 2
    assert train_from_recipe(recipe, pieces, resume=True, progress=False).finished

    expected, got = metrics(whole), metrics(pieces)
    assert [(r["step"], r["epoch"], r["round"]) for r in got] == [(4, 1, 1), (8, 2, 1), (12, 3, 2)]
    assert [(r["step"], r["epoch"], r["round"], r["lr"]) for r in got] == [(r["step"], r["epoch"], r["round"], r["lr"]) for r in expected]
    for key in ("train_loss", "valid_loss"):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in expected], rel=1e-5)
    a = read_checkpoint(whole / "checkpoints" / "last.pt")["state_dict"]
    b = read_checkpoint(pieces / "checkpoints" / "last.pt")["state_dict"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-7)
    # A finished run has nothing left to do.
    assert train_from_recipe(recipe, pieces, resume=True, progress=False).stopped_by == "finished"


def test_a_tiny_time_budget_stops_and_saves_the_position(tmp_path, cache_dir):
    result = train_from_recipe(hq_recipe(tmp_path, cache_dir), tmp_path / "run",
                               ["train.max_steps=0", "train.max_time=1e-9"], progress=False)
    assert result.stopped_by == "train.max_time = 1e-09 s" and not result.finished
    progress = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", full=True)["training"]["progress"]
    assert progress["step"] == progress["position"] == result.step

