"""Image segmentation with the 2D U-Net as a task of the shared trainer: recipe, loss, validation.

An image recipe has these tables::

    [model]          preset = "unet2d-ronneberger" (plus any UNet2dConfig field to change), or a full config
    [data]           waveunet.image.data.ImageDataConfig: root, valid_fraction or valid_names, seed
    [augmentation]   waveunet.image.augment.AugmentConfig: flip, rotate90, elastic_std, brightness, contrast
    [weight_map]     optional: waveunet.image.weights.WeightMapConfig (w0, sigma); present = weighted loss
    [train]          waveunet.train.config.TrainConfig, with loss = "cross_entropy" or "dice"

Training examples are augmented random crops: the model's input tile, mirror-padded where it
leaves the image, and the mask (and weight map) under its output window. Validation covers every
validation image with fixed output windows, each pixel scored once, and reports ``valid_loss``,
``valid_accuracy``, ``valid_iou`` (mean over classes) and ``valid_iou_<k>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import WaveUNetError
from ..models.config import UNet2dConfig
from ..models.registry import model_from_config
from .config import SEGMENTATION_LOSSES, TrainConfig
from .distributed import Processes
from .stream import IndexedBatches, to_device
from .trainer import Task, TaskKind
from ..image.augment import AugmentConfig
from ..image.data import ImageDataConfig, LabelledImage, SegmentationFolder
from ..image.datasets import IGNORE_INDEX, RandomCrops, ValidationWindows
from ..image.losses import segmentation_loss
from ..image.metrics import confusion_matrix, segmentation_metrics
from ..image.weights import WeightMapConfig
from ..image.windows import WindowShape

#: recipe keys holding paths; relative paths in a recipe file are relative to that file
PATH_KEYS = ["data.root"]

#: the largest output side of a validation window (pixels); bounds the memory of validation
VALIDATION_SIDE = 512


@dataclass(frozen=True)
class ImageRecipe:
    """A 2D U-Net training recipe."""

    model: UNet2dConfig
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    weight_map: WeightMapConfig | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(loss="cross_entropy"))

    def __post_init__(self):
        if self.train.loss not in SEGMENTATION_LOSSES:
            raise ValueError(f"train.loss must be one of {', '.join(SEGMENTATION_LOSSES)} for images; "
                             f"got {self.train.loss!r}")
        if self.weight_map is not None and self.train.loss != "cross_entropy":
            raise ValueError("a [weight_map] weighs the cross-entropy; train.loss is " + repr(self.train.loss))
        if self.data.num_classes != self.model.classes:
            raise ValueError(f"data.num_classes = {self.data.num_classes} but the model predicts "
                             f"{self.model.classes} classes (model.classes)")
        if self.data.channels not in (None, self.model.in_channels):
            raise ValueError(f"data.channels = {self.data.channels} but the model takes "
                             f"{self.model.in_channels} (model.in_channels)")


class SegmentationLoss:
    """``(scores [batch, classes, H, W], targets) -> scalar``, the trainer's criterion.

    ``targets`` is the mask [batch, H, W], or ``(mask, weight)`` with a weight map [batch, H, W].
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, scores: torch.Tensor, targets) -> torch.Tensor:
        mask, weight = targets if isinstance(targets, (tuple, list)) else (targets, None)
        return segmentation_loss(self.name, scores, mask, weight)


class SegmentationValidation:
    """Loss, pixel accuracy and IoU of the model over the validation windows.

    ``valid_loss`` is the mean of the window losses, each weighted by its scored pixels (by its
    total pixel weight when there are weight maps), which makes it the exact pixel mean for the
    cross-entropy; accuracy and IoU come from the confusion matrix summed over all windows.
    """

    def __init__(self, windows: Dataset, criterion: SegmentationLoss, num_classes: int, batch_size: int):
        self.windows, self.criterion = windows, criterion
        self.num_classes, self.batch_size = num_classes, batch_size

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        loss_sum = mass_sum = 0.0
        for images, mask, *weight in DataLoader(self.windows, batch_size=self.batch_size):
            images, mask, weight = to_device((images, mask, weight[0] if weight else None), device)
            scores = model(images).float()
            mass = float(weight.sum()) if weight is not None else float((mask != IGNORE_INDEX).sum())
            loss_sum += float(self.criterion(scores, mask if weight is None else (mask, weight))) * mass
            mass_sum += mass
            confusion += confusion_matrix(scores.argmax(1), mask, self.num_classes)
        return {"valid_loss": loss_sum / max(mass_sum, 1e-12), **segmentation_metrics(confusion)}


class SegmentationExamples:
    """Writes the first ``count`` validation windows to TensorBoard: the output window of the
    image, the true mask and the predicted one (classes spread over the grey range)."""

    def __init__(self, windows: ValidationWindows, count: int):
        self.windows, self.count = windows, min(count, len(windows))

    def __call__(self, writer, model: nn.Module, step: int, device: torch.device) -> None:
        top, left = self.windows.shape.context
        height, width = self.windows.shape.output
        for index in range(self.count):
            image, mask, *_ = self.windows[index]
            predicted = model(image[None].to(device))[0].argmax(0).cpu()
            scale = max(model.config.classes - 1, 1)
            writer.add_image(f"example{index}/image", image[:, top:top + height, left:left + width], step)
            writer.add_image(f"example{index}/truth", (mask.clamp(min=0).float() / scale)[None], step)
            writer.add_image(f"example{index}/prediction", (predicted.float() / scale)[None], step)


def validation_shape(model: nn.Module, images: Sequence[LabelledImage], limit: int = VALIDATION_SIDE) -> WindowShape:
    """The validation window: of the model's windows with an output side from the training tile's up
    to ``limit``, the one that covers ``images`` with the fewest input pixels.

    Validation draws no random crops, so it can take larger windows than training and recompute the
    context of fewer of them. With valid convolutions the scores of a window whose offset is a
    multiple of ``model.length_step`` (it lies on the pooling grid) are those of one pass over the
    whole mirror-padded image, whatever its size; off the grid they differ slightly.
    """
    smallest = min(min(example.mask.shape) for example in images)
    sides = range(model.output_length, max(model.output_length, min(limit, smallest)) + 1, model.length_step)

    def window(side: int) -> WindowShape:
        sizes = model.sizes(side)
        return WindowShape.of(sizes.input_length, sizes.output_length)

    def input_pixels(side: int) -> int:
        shape = window(side)
        return sum(len(shape.covering_windows(*example.mask.shape)) for example in images) * shape.input[0] ** 2

    return window(min(sides, key=input_pixels))


def _describe(folder: SegmentationFolder) -> str:
    return f"{folder.root}: {len(folder)} images ({', '.join(folder.names)})"


def build_image_task(recipe: ImageRecipe, processes: Processes, device: torch.device) -> Task:
    """The model, the training stream and the validation of ``recipe`` for one process."""
    config, train = recipe.model, recipe.train
    model = model_from_config(config)
    data = dataclasses.replace(recipe.data, channels=config.in_channels)
    train_images, valid_images = data.load()
    if not len(valid_images):
        raise WaveUNetError(f"{data.root}: no validation images (set data.valid_fraction or data.valid_names)")
    shape = WindowShape.of(model.input_length, model.output_length)
    crops = RandomCrops(train_images.examples, shape, epoch_size=train.epoch_size * train.batch_size,
                        num_classes=config.classes, augmentation=recipe.augmentation,
                        weight_map=recipe.weight_map, seed=train.seed)
    windows = ValidationWindows(valid_images.examples, validation_shape(model, valid_images.examples),
                                num_classes=config.classes, weight_map=recipe.weight_map)
    stream = IndexedBatches(crops, train.epoch_size, processes.rank, processes.world_size,
                            train.workers, pin_memory=device.type == "cuda")
    criterion = SegmentationLoss(train.loss)
    metadata = {"training_data": _describe(train_images), "validation_data": _describe(valid_images),
                "training_examples": f"{shape.input[0]}x{shape.input[1]} input / "
                                     f"{shape.output[0]}x{shape.output[1]} output pixels"}
    return Task(model=model, criterion=criterion, stream=stream,
                validate=SegmentationValidation(windows, criterion, config.classes,
                                                train.valid_batch_size),
                log_examples=SegmentationExamples(windows, train.log_examples), metadata=metadata)


TASK = TaskKind(ImageRecipe, build_image_task, PATH_KEYS)
