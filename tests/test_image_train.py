"""Training the 2D U-Net with the shared trainer: losses, metrics, the recipe task, the CLI, resuming."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import waveunet
from waveunet.cli import main
from waveunet.image.data import ImageDataConfig, SegmentationFolder
from waveunet.image.datasets import IGNORE_INDEX, ValidationWindows
from waveunet.image.losses import cross_entropy, dice_loss
from waveunet.image.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy, segmentation_metrics
from waveunet.train.image import SegmentationLoss, SegmentationValidation, validation_shape
from waveunet.image.windows import WindowShape
from waveunet.models import build_model

ISBI = Path(__file__).resolve().parents[1] / "data" / "isbi2012-em" / "train"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# ----------------------------------------------------------------------------------------- losses


def scores_of(probabilities) -> torch.Tensor:
    """Logits [1, classes, 1, pixels] whose soft-max is ``probabilities`` [pixels][classes]."""
    return torch.tensor(probabilities, dtype=torch.float64).log().T[None, :, None, :]


def test_cross_entropy_plain_weighted_and_ignoring():
    scores = scores_of([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]])
    mask = torch.tensor([[[0, 1, 0]]])
    ce = [-math.log(0.9), -math.log(0.75), -math.log(0.5)]
    assert cross_entropy(scores, mask).item() == pytest.approx(sum(ce) / 3)
    weight = torch.tensor([[[1.0, 10.0, 0.5]]])
    assert cross_entropy(scores, mask, weight).item() == pytest.approx((ce[0] + 10 * ce[1] + 0.5 * ce[2]) / 11.5)
    ignored = torch.tensor([[[0, IGNORE_INDEX, 0]]])
    assert cross_entropy(scores, ignored).item() == pytest.approx((ce[0] + ce[2]) / 2)
    assert cross_entropy(scores, ignored, weight).item() == pytest.approx((ce[0] + 0.5 * ce[2]) / 1.5)
    nothing = torch.full((1, 1, 3), IGNORE_INDEX)
    assert cross_entropy(scores, nothing).item() == 0.0


def test_dice_loss_values():
    mask = torch.tensor([[[0, 1, 1, IGNORE_INDEX]]])
    certain = scores_of([[1 - 1e-12, 1e-12], [1e-12, 1 - 1e-12], [1e-12, 1 - 1e-12], [0.5, 0.5]])
    assert dice_loss(certain, mask).item() == pytest.approx(0.0, abs=1e-9)
    # half-sure everywhere: class 0: overlap 0.5, sizes 1.5 + 1; class 1: overlap 1, sizes 1.5 + 2
    unsure = scores_of([[0.5, 0.5]] * 4)
    expected = 1 - ((2 * 0.5 + 1) / (2.5 + 1) + (2 * 1.0 + 1) / (3.5 + 1)) / 2
    assert dice_loss(unsure, mask).item() == pytest.approx(expected)
    wrong = scores_of([[1e-12, 1 - 1e-12], [1 - 1e-12, 1e-12], [1 - 1e-12, 1e-12], [0.5, 0.5]])
    assert dice_loss(wrong, mask, smooth=0.0).item() == pytest.approx(1.0)


def test_loss_gradients_flow_through_the_weights_only_where_scored():
    scores = torch.zeros(1, 2, 2, 2, requires_grad=True)
    mask = torch.tensor([[[0, 1], [IGNORE_INDEX, 1]]])
    cross_entropy(scores, mask, torch.tensor([[[1.0, 0.0], [5.0, 2.0]]])).backward()
    moved = scores.grad.abs().sum(1)[0]
    assert moved[0, 0] > 0 and moved[1, 1] > 0 and moved[0, 1] == 0 and moved[1, 0] == 0


# ----------------------------------------------------------------------------------------- metrics


def test_metrics_from_the_confusion_matrix():
    predicted = torch.tensor([[0, 0, 1, 1, 2, 0]])
    mask = torch.tensor([[0, 1, 1, 1, IGNORE_INDEX, 0]])
    confusion = confusion_matrix(predicted, mask, num_classes=3)
    assert confusion.tolist() == [[2, 0, 0], [1, 2, 0], [0, 0, 0]]
    assert pixel_accuracy(confusion) == 4 / 5
    iou = iou_per_class(confusion)
    assert iou[:2] == [2 / 3, 2 / 3] and math.isnan(iou[2])  # class 2 neither present nor predicted
    assert mean_iou(confusion) == pytest.approx(2 / 3)
    metrics = segmentation_metrics(confusion)
    assert metrics["valid_accuracy"] == 0.8 and metrics["valid_iou"] == pytest.approx(2 / 3)
    assert metrics["valid_iou_1"] == pytest.approx(2 / 3)
    assert math.isnan(pixel_accuracy(torch.zeros(2, 2, dtype=torch.int64)))


def test_a_predicted_class_that_is_absent_scores_zero_iou():
    confusion = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 0]), num_classes=2)
    assert iou_per_class(confusion) == [0.0, 0.0] and pixel_accuracy(confusion) == 0.0


# ----------------------------------------------------------------------------------------- validation


def crop_isbi(root: Path, names=("00", "01", "02", "03"), size: int = 96) -> Path:
    """A small real data set: the top-left corner of some ISBI slices, masks as two-level PNGs."""
    for name in names:
        for kind in ("images", "masks"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            with Image.open(ISBI / kind / f"{name}.png") as picture:
                picture.crop((0, 0, size, size)).save(root / kind / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def small_isbi(tmp_path_factory) -> Path:
    return crop_isbi(tmp_path_factory.mktemp("isbi"))


def test_validation_windows_larger_than_the_training_tile_score_the_same(small_isbi):
    """Valid convolutions, windows on the pooling grid: the metrics do not depend on the window (only the cost does)."""
    torch.manual_seed(0)
    model = build_model("unet2d-ronneberger", levels=2, features=4, output_size=20).eval()
    images = SegmentationFolder(small_isbi, names=["00", "01"]).examples
    training = WindowShape.of(model.input_length, model.output_length)
    larger = validation_shape(model, images)
    assert larger.output[0] > training.output[0]
    count = lambda shape: sum(len(shape.covering_windows(96, 96)) for _ in images) * shape.input[0] ** 2
    assert count(larger) < count(training)
    for shape in (training, larger):
        assert all(offset % model.length_step == 0 for window in shape.covering_windows(96, 96) for offset in window)
    results = []
    for shape in (training, larger):
        validate = SegmentationValidation(ValidationWindows(images, shape), SegmentationLoss("cross_entropy"), 2, 8)
        with torch.no_grad():
            results.append(validate(model, torch.device("cpu")))
    assert results[0]["valid_accuracy"] == results[1]["valid_accuracy"]
    assert results[0]["valid_iou"] == pytest.approx(results[1]["valid_iou"], abs=1e-12)
    assert results[0]["valid_loss"] == pytest.approx(results[1]["valid_loss"], rel=1e-5)
    assert 0 < results[0]["valid_accuracy"] < 1


# ----------------------------------------------------------------------------------------- the CLI

TINY_RECIPE = """
[model]
preset = "unet2d-ronneberger"
levels = 2
features = 4
output_size = 20
name = "tiny"

[data]
root = "{root}"
valid_names = ["03"]

[augmentation]
elastic_std = 4.0

[weight_map]
w0 = 10.0
sigma = 5.0

[train]
batch_size = 2
epoch_size = 2
loss = "cross_entropy"
workers = 0
device = "cpu"
valid_batch_size = 4
log_examples = 1

[train.optimizer]
name = "sgd"
lr = 1e-2
momentum = 0.99

[train.early_stopping]
monitor = "valid_iou"
mode = "max"

[train.finetune]
enabled = false
"""


def train_cli(*args) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(main, ["image", "train", *map(str, args), "--no-progress"])


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_run_folder_resume_and_segment(small_isbi, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.format(root=small_isbi))
    run = tmp_path / "run"

    first = train_cli(recipe, "--out", run, "--set", "train.max_steps=4")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "metrics.jsonl", "tensorboard"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert [r["step"] for r in records(run)] == [2, 4]
    for key in ("train_loss", "valid_loss", "valid_accuracy", "valid_iou", "valid_iou_0", "valid_iou_1"):
        assert all(math.isfinite(r[key]) for r in records(run)), key
    assert 'loss = "cross_entropy"' in (run / "config.toml").read_text()

    again = train_cli(recipe, "--out", run)
    assert again.exit_code == 1 and "holds another run; use --resume" in again.output

    resumed = train_cli(recipe, "--out", run, "--resume", "--set", "train.max_steps=6")
    assert resumed.exit_code == 0, resumed.output
    straight = tmp_path / "straight"
    assert train_cli(recipe, "--out", straight, "--set", "train.max_steps=6").exit_code == 0
    assert [r["step"] for r in records(run)] == [2, 4, 6]
    for a, b in zip(records(run), records(straight)):  # interrupted and resumed == uninterrupted
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-6) and a["valid_iou"] == b["valid_iou"]

    model = waveunet.load_model(run / "checkpoints" / "best.pt")
    assert model.config.name == "tiny" and model.metadata["step"] in (2, 4, 6)
    segmented = CliRunner().invoke(main, ["image", "segment", str(small_isbi / "images" / "03.png"), "--model",
                                          str(run / "checkpoints" / "best.pt"), "--out", str(tmp_path / "seg"),
                                          "--overlay", "--no-progress"])
    assert segmented.exit_code == 0, segmented.output
    with Image.open(tmp_path / "seg" / "03.png") as mask:
        assert mask.size == (96, 96) and set(np.unique(np.asarray(mask))) <= {0, 1}


def bad_folder(tmp_path: Path, spoil) -> Path:
    root = crop_isbi(tmp_path / "data", names=("00", "01", "02"), size=64)
    spoil(root)
    return root


@pytest.mark.parametrize("spoil, message", [
    (lambda root: Image.new("L", (64, 50)).save(root / "masks" / "01.png"),
     "01.png: mask is 64x50 but its image is 64x64 (width x height)"),
    (lambda root: Image.fromarray(np.full((64, 64), 7, np.uint8)).save(root / "masks" / "02.png"),
     "02.png: mask values 7 are neither class indices 0..1 nor two-level 0/255"),
    (lambda root: (root / "images" / "00.png").write_bytes(b"not a png"),
     "00.png: cannot read the image"),
])
def test_bad_data_is_one_line_before_the_run_folder_is_made(tmp_path, spoil, message):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.format(root=bad_folder(tmp_path, spoil)).replace('["03"]', '["02"]'))
    result = train_cli(recipe, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("train.loss=mse", "train.loss must be one of cross_entropy, dice for images; got 'mse'"),
    ("data.num_classes=3", "data.num_classes = 3 but the model predicts 2 classes"),
    ("train.loss=dice", "a [weight_map] weighs the cross-entropy"),
])
def test_inconsistent_recipes_are_refused(small_isbi, tmp_path, override, message):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.format(root=small_isbi))
    result = train_cli(recipe, "--out", tmp_path / "run", "--set", override)
    assert result.exit_code == 1 and message in result.output and str(recipe) in result.output


@pytest.mark.parametrize("name", ["unet2d-ronneberger", "unet2d-padded", "unet2d-quickstart"])
def test_bundled_recipes_read(name):
    from waveunet.train.launch import read_recipe

    recipe = read_recipe(RECIPES / f"{name}.toml", task="image")
    assert Path(recipe.data.root) == ISBI and recipe.train.loss == "cross_entropy"
    assert ImageDataConfig(root=recipe.data.root).load()[1].names == ["04", "18", "21"]


def test_audio_recipes_refuse_segmentation_losses():
    from waveunet.errors import WaveUNetError
    from waveunet.train.launch import read_recipe

    with pytest.raises(WaveUNetError, match="train.loss must be one of mse, l1 for audio; got 'dice'"):
        read_recipe(RECIPES / "quickstart.toml", ["train.loss=dice"])
