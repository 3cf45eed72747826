"""Recipes: TOML into typed dataclasses, --set overrides, one-line errors, the shipped recipes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from waveunet.errors import WaveUNetError
from waveunet.models.presets import PRESETS
from waveunet.train.audio import AudioRecipe
from waveunet.train.config import TrainConfig
from waveunet.train.launch import read_recipe
from waveunet.train.recipe import apply_overrides, dump_toml, from_dict, parse_override, to_dict

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PAPER_VARIANTS = ["M1", "M2", "M3", "M4", "M5", "M6", "M7", "M5-HighSR"]


def write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = """
[model]
preset = "M4"

[data]
format = "folder"
root = "tracks"
"""


def test_parse_override_values_are_toml():
    assert parse_override("train.optimizer.lr=1e-5") == (["train", "optimizer", "lr"], 1e-5)
    assert parse_override("train.optimizer.betas=[0.5, 0.9]") == (["train", "optimizer", "betas"], [0.5, 0.9])
    assert parse_override('data.root="/x y"') == (["data", "root"], "/x y")
    assert parse_override("data.format=musdb") == (["data", "format"], "musdb")  # bare word: a string
    assert parse_override("augmentation.gain=false") == (["augmentation", "gain"], False)
    for bad in ("train.lr", "=3", "train..lr=3"):
        with pytest.raises(WaveUNetError, match="section.key=value"):
            parse_override(bad)


def test_apply_overrides_creates_tables_and_copies():
    recipe = {"train": {"optimizer": {"lr": 1e-4}}}
    out = apply_overrides(recipe, ["train.optimizer.lr=3e-4", "train.finetune.enabled=false"])
    assert out == {"train": {"optimizer": {"lr": 3e-4}, "finetune": {"enabled": False}}}
    assert recipe == {"train": {"optimizer": {"lr": 1e-4}}}
    with pytest.raises(WaveUNetError, match="train.optimizer is a value"):
        apply_overrides({"train": {"optimizer": "adam"}}, ["train.optimizer.lr=1"])


def test_from_dict_types_and_defaults():
    config = from_dict(TrainConfig, {"batch_size": 4, "optimizer": {"lr": 1, "betas": [0.5, 0.9]}}, "r.toml")
    assert config.batch_size == 4 and config.epoch_size == 2000
    assert config.optimizer.lr == 1.0 and isinstance(config.optimizer.lr, float)
    assert config.optimizer.betas == (0.5, 0.9)
    assert config.finetune == TrainConfig().finetune


@pytest.mark.parametrize("table, message", [
    ({"learning_rate": 1}, r"r.toml: unknown key train.learning_rate \(known keys"),
    ({"optimizer": {"lr": "fast"}}, "r.toml: train.optimizer.lr must be a number"),
    ({"batch_size": 1.5}, "r.toml: train.batch_size must be an integer"),
    ({"batch_size": True}, "r.toml: train.batch_size must be an integer"),
    ({"optimizer": {"betas": [0.9]}}, "r.toml: train.optimizer.betas must be a list of 2 values"),
    ({"loss": "huber"}, "r.toml: train: train.loss must be one of mse, l1"),
    ({"optimizer": 3}, "r.toml: train.optimizer must be a table"),
])
def test_from_dict_errors_are_one_line(table, message):
    with pytest.raises(WaveUNetError, match=message) as error:
        from_dict(TrainConfig, table, "r.toml", "train.")
    assert "\n" not in str(error.value)


def test_read_recipe_preset_paths_and_overrides(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    recipe = read_recipe(path)
    assert isinstance(recipe, AudioRecipe)
    assert recipe.model == PRESETS["M4"]
    assert recipe.data.root == str(tmp_path / "tracks")  # relative to the recipe file
    monkeypatch.chdir(tmp_path.parent)
    recipe = read_recipe(path, ["model.levels=6", "data.root=other", "train.batch_size=4"])
    assert recipe.model.levels == 6 and recipe.model.name == "M4-modified"
    assert recipe.data.root == str(tmp_path.parent / "other")  # overrides: relative to the working directory
    assert recipe.train.batch_size == 4


@pytest.mark.parametrize("text, overrides, message", [
    (MINIMAL + "\n[train]\nlr = 1\n", [], "recipe.toml: unknown key train.lr"),
    (MINIMAL, ["train.optimizer.learning_rate=1"], "recipe.toml: unknown key train.optimizer.learning_rate"),
    (MINIMAL, ["model.preset=M9"], "unknown model.preset 'M9'"),
    (MINIMAL, ["model.level=3"], "recipe.toml: unknown key model.level"),
    (MINIMAL, ["model.padding=circular"], "recipe.toml: model: WaveUNetConfig.padding must be one of"),
    ('[model]\npreset = "M4"\n', [], "recipe.toml: missing table data"),
    (MINIMAL, ["data.format=mp3"], "recipe.toml: data.format must be one of"),
    (MINIMAL + "\n[oops]\nx = 1\n", [], "recipe.toml: unknown key oops"),
    ("[model\n", [], "recipe.toml: not a valid TOML recipe"),
])
def test_read_recipe_errors(tmp_path, text, overrides, message):
    with pytest.raises(WaveUNetError, match=message) as error:
        read_recipe(write(tmp_path, text), overrides)
    assert "\n" not in str(error.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(WaveUNetError, match="no such recipe file"):
        read_recipe(tmp_path / "nope.toml")


def test_dump_toml_round_trips_a_resolved_recipe(tmp_path):
    recipe = read_recipe(write(tmp_path, MINIMAL), ['data.root="/a \\"quoted\\" path"', "train.max_time=1.5"])
    resolved = to_dict(recipe)
    assert tomllib.loads(dump_toml(resolved)) == resolved
    again = read_recipe(write(tmp_path, dump_toml(resolved), "config.toml"))
    assert again == recipe


@pytest.mark.parametrize("name", [*PAPER_VARIANTS, "pytorch-default", "quickstart"])
def test_shipped_recipes_parse(name):
    recipe = read_recipe(RECIPES / f"{name}.toml")
    if name in PRESETS:
        assert recipe.model == PRESETS[name]
        assert recipe.data.format == ("musdb-hq" if name == "pytorch-default" else "musdb")


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_paper_recipes_follow_the_papers_training_setup(name):
    train = read_recipe(RECIPES / f"{name}.toml").train
    recipe = read_recipe(RECIPES / f"{name}.toml")
    assert (train.optimizer.name, train.optimizer.lr, train.loss) == ("adam", 1e-4, "mse")
    assert train.batch_size == (4 if name == "M7" else 16)
    assert (train.epoch_size, train.early_stopping.patience, train.scheduler.name) == (2000, 20, "constant")
    assert (train.finetune.enabled, train.finetune.lr, train.finetune.batch_factor) == (True, 1e-5, 2)
    assert recipe.augmentation.gain and recipe.augmentation.gain_range == (0.7, 1.0)
    assert not recipe.augmentation.channel_swap and not recipe.augmentation.remix
