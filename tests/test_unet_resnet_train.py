"""Training the U-Net with a ResNet encoder from recipes: multi-class colour masks end to end
(per-class IoU and Dice in metrics.jsonl and TensorBoard, palette masks from ``image segment``),
the original's training options (freeze_bn, freeze_encoder, encoder_lr_scale), resumed exactly,
and the bundled recipes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import waveunet
from waveunet.cli import main
from waveunet.checkpoint import read_checkpoint
from waveunet.train.launch import read_recipe
from waveunet.train.trainer import Trainer

from test_image_train import records, train_cli as train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ISBI = Path(__file__).resolve().parents[1] / "data" / "isbi2012-em" / "train"
COLOURS = {"background": (0, 0, 0), "road": (128, 64, 128), "sky": (70, 130, 180)}

RECIPE = """
[model]
encoder = "resnet18"
in_channels = 3
classes = 3
output_size = 48
name = "tiny-resnet"

[data]
root = "{root}"
valid_names = ["03"]

[data.classes]
background = [0, 0, 0]
road = [128, 64, 128]
sky = "#4682b4"

[augmentation]
elastic_std = 0.0

[train]
batch_size = 2
epoch_size = 2
loss = "cross_entropy"
workers = 0
device = "cpu"
valid_batch_size = 2
log_examples = 1

[train.optimizer]
lr = 1e-3

[train.early_stopping]
monitor = "valid_iou"
mode = "max"

[train.finetune]
enabled = false
"""


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory) -> Path:
    """Four 64x64 RGB images of three classes in blocks, the class visible in the colour (plus
    noise), with RGB masks in the classes' colours."""
    root = tmp_path_factory.mktemp("three")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    table = np.array(list(COLOURS.values()), np.uint8)
    for i in range(4):
        rng = np.random.default_rng(i)
        labels = np.kron(rng.integers(0, 3, (8, 8)), np.ones((8, 8), np.int64))
        image = table[labels].astype(np.float64) * 0.6 + rng.normal(40, 20, (64, 64, 3))
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(table[labels]).save(root / "masks" / f"{i:02d}.png")
    return root


def recipe_file(tmp_path: Path, root: Path, extra: str = "") -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE.format(root=root) + extra)
    return path


def test_multi_class_colour_masks_end_to_end(three_classes, tmp_path):
    run = tmp_path / "run"
    result = train(recipe_file(tmp_path, three_classes), "--out", run, "--set", "train.max_steps=4")
    assert result.exit_code == 0, result.output
    for record in records(run):
        for metric in ("iou", "dice"):
            per_class = [record[f"valid_{metric}_{name}"] for name in COLOURS]
            defined = [v for v in per_class if not math.isnan(v)]
            assert defined and record[f"valid_{metric}"] == pytest.approx(sum(defined) / len(defined))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"metrics/valid_iou_road", "metrics/valid_dice_sky", "metrics/valid_dice", "metrics/valid_iou"} <= scalars
    assert {"example0/truth", "example0/prediction"} <= set(events.Tags()["images"])

    best = run / "checkpoints" / "best.pt"
    assert read_checkpoint(best)["metadata"]["classes"] == {k: list(v) for k, v in COLOURS.items()}
    out = tmp_path / "segmented"
    segmented = CliRunner().invoke(main, ["image", "segment", str(three_classes / "images" / "03.png"), "--model",
                                          str(best), "--out", str(out), "--overlay", "--no-progress"])
    assert segmented.exit_code == 0, segmented.output
    with Image.open(out / "03.png") as mask:
        assert mask.mode == "P" and mask.size == (64, 64)
        assert mask.getpalette()[:9] == [v for colour in COLOURS.values() for v in colour]
        labels = np.asarray(mask)
    assert set(np.unique(labels)) <= {0, 1, 2}
    model = waveunet.load_model(best)
    image = waveunet.image.data.read_image(three_classes / "images" / "03.png")
    assert np.array_equal(labels, waveunet.segment(model, image).argmax(0).numpy())
    with Image.open(out / "03.overlay.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size == (64, 64)


def test_freeze_options_and_the_encoder_learning_rate(three_classes, tmp_path):
    from waveunet.train.image import build_image_task
    from waveunet.train.distributed import Processes
    from waveunet.train.rundir import RunDir

    recipe = read_recipe(recipe_file(tmp_path, three_classes, "\n[transfer]\nfreeze_bn = true\nencoder_lr_scale = 0.1\n"),
                         ["train.max_steps=2"], task="image")
    torch.manual_seed(0)
    task = build_image_task(recipe, Processes(), torch.device("cpu"))
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    trainer = Trainer(task, recipe.train, RunDir(tmp_path / "run"), device="cpu", progress=False)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(1e-3), pytest.approx(1e-4)] and groups[1]["lr_scale"] == 0.1
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in task.model.encoder.parameters()}
    (tmp_path / "run").mkdir()
    trainer.fit()
    after = task.model.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], before[k]) for k in stats)  # freeze_bn: statistics untouched
    assert not torch.equal(after["encoder.layer1.0.conv1.weight"], before["encoder.layer1.0.conv1.weight"])

    frozen = read_recipe(recipe_file(tmp_path, three_classes, "\n[transfer]\nfreeze_encoder = true\n"),
                         ["train.max_steps=2"], task="image")
    task = build_image_task(frozen, Processes(), torch.device("cpu"))
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    trainer = Trainer(task, frozen.train, RunDir(tmp_path / "frozen"), device="cpu", progress=False)
    assert len(trainer.optimizer.param_groups) == 1  # the decoder's only
    (tmp_path / "frozen").mkdir()
    trainer.fit()
    after = task.model.state_dict()
    encoder = [k for k in after if k.startswith("encoder.") and not k.endswith(("running_mean", "running_var",
                                                                                 "num_batches_tracked"))]
    assert all(torch.equal(after[k], before[k]) for k in encoder)
    assert not torch.equal(after["decoder.bottleneck.0.conv.weight"], before["decoder.bottleneck.0.conv.weight"])


def test_training_options_are_resumed_exactly(three_classes, tmp_path):
    recipe = recipe_file(tmp_path, three_classes, "\n[transfer]\nfreeze_bn = true\nencoder_lr_scale = 0.1\n")
    schedule = ["--set", "train.scheduler.name=cyclic", "--set", "train.scheduler.min_lr=1e-5"]
    run, straight = tmp_path / "run", tmp_path / "straight"
    assert train(recipe, "--out", run, "--set", "train.max_steps=2", *schedule).exit_code == 0
    resumed = train(recipe, "--out", run, "--resume", "--set", "train.max_steps=4", *schedule)
    assert resumed.exit_code == 0, resumed.output
    assert train(recipe, "--out", straight, "--set", "train.max_steps=4", *schedule).exit_code == 0
    assert [r["step"] for r in records(run)] == [2, 4]
    for a, b in zip(records(run), records(straight)):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-6) and a["lr"] == b["lr"]
    changed = train(recipe, "--out", run, "--resume", "--set", "train.max_steps=6", "--set", "transfer.freeze_bn=false",
                    *schedule)
    assert changed.exit_code == 1 and "transfer.freeze_bn" in changed.output


def test_unknown_colours_and_misplaced_options_are_refused_before_the_run(three_classes, tmp_path):
    root = tmp_path / "data"
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
        for path in (three_classes / kind).iterdir():
            (root / kind / path.name).write_bytes(path.read_bytes())
    mask = np.asarray(Image.open(root / "masks" / "01.png")).copy()
    mask[5, 9] = (255, 0, 255)
    Image.fromarray(mask).save(root / "masks" / "01.png")
    result = train(recipe_file(tmp_path, root), "--out", tmp_path / "run")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "01.png: colour #ff00ff [255, 0, 255] (first at x=9, y=5; 1 pixels) is none of the classes" in result.output
    assert not (tmp_path / "run").exists()
    unet = tmp_path / "unet.toml"
    unet.write_text('[model]\npreset = "unet2d-padded"\n\n[transfer]\nfreeze_encoder = true\n')
    refused = train(unet, "--out", tmp_path / "run")
    assert refused.exit_code == 1 and "need a model with an encoder" in refused.output


@pytest.mark.parametrize("name", ["unet-resnet18-isbi", "unet-resnet50-imagenet"])
def test_bundled_recipes_read(name):
    recipe = read_recipe(RECIPES / f"{name}.toml", task="image")
    assert recipe.train.loss == "cross_entropy" and recipe.model.classes == 2
    if name == "unet-resnet18-isbi":
        assert recipe.model.encoder == "resnet18" and recipe.model.encoder_weights is None  # random init: no download
        assert Path(recipe.data.root) == ISBI and recipe.model.in_channels == 1
    else:
        assert recipe.model.encoder == "resnet50" and recipe.model.deep_stem and recipe.model.dilated
        assert recipe.model.encoder_weights == "imagenet" and recipe.transfer.encoder_lr_scale == 0.1
