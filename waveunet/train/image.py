"""Image segmentation with the U-Nets as a task of the shared trainer: recipe, loss, validation.

An image recipe has these tables::

    [model]          preset = "unet2d-ronneberger" or "unet-resnet50" (plus any field of its config to
                     change), or a full UNet2dConfig or UNetResnetConfig
    [data]           waveunet.image.data.ImageDataConfig: root, valid_fraction or valid_names, seed
    [data.classes]   optional: name = [r, g, b] (or "#rrggbb") per class, in class order: colour masks
    [augmentation]   waveunet.image.augment.AugmentConfig: flip, rotate90, elastic_std, brightness, contrast
    [weight_map]     optional: waveunet.image.weights.WeightMapConfig (w0, sigma); present = weighted loss
    [transfer]       optional: TransferConfig: freeze_bn, freeze_encoder, encoder_lr_scale
    [train]          waveunet.train.config.TrainConfig, with loss = "cross_entropy" or "dice"

Training examples are augmented random crops: the model's input tile, mirror-padded where it
leaves the image, and the mask (and weight map) under its output window. Validation covers every
validation image with fixed output windows, each pixel scored once, and reports ``valid_loss``,
``valid_accuracy``, the means over classes ``valid_iou`` and ``valid_dice``, and per class
``valid_iou_<name>`` and ``valid_dice_<name>`` (names from ``[data.classes]``, else 0, 1, ...);
TensorBoard shows them all under ``metrics/``. A UNetResnetConfig's ``encoder_weights`` are loaded
into the freshly initialised model before training starts (and the checkpoints say which).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import WaveUNetError
from ..models.config import UNet2dConfig, UNetResnetConfig
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
from ..image.palette import class_colours, colourise
from ..image.weights import WeightMapConfig
from ..image.windows import WindowShape

#: recipe keys holding paths; relative paths in a recipe file are relative to that file
PATH_KEYS = ["data.root"]

#: the largest output side of a validation window (pixels); bounds the memory of validation
VALIDATION_SIDE = 512


@dataclass(frozen=True)
class TransferConfig:
    """The original UNetResnet's training options (recipe table ``[transfer]``).

    Attributes:
        freeze_bn: keep every BatchNorm layer in eval mode while training: its running statistics
            (e.g. ImageNet's) stay as they are and normalise every batch (its scale and shift still
            train), which suits small batches.
        freeze_encoder: the encoder's parameters are not trained (the original's ``freeze_backbone``).
        encoder_lr_scale: the encoder trains at this multiple of the learning rate (the original's
            configs use 0.1: lr / 10 for the pretrained backbone); the decoder at the rate itself.
    """

    freeze_bn: bool = False
    freeze_encoder: bool = False
    encoder_lr_scale: float = 1.0

    def __post_init__(self):
        if not self.encoder_lr_scale > 0:
            raise ValueError(f"transfer.encoder_lr_scale must be positive; got {self.encoder_lr_scale}")


@dataclass(frozen=True)
class ImageRecipe:
    """A U-Net segmentation training recipe."""

    model: UNet2dConfig | UNetResnetConfig
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    weight_map: WeightMapConfig | None = None
    transfer: TransferConfig = field(default_factory=TransferConfig)
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
        if not isinstance(self.model, UNetResnetConfig) and (self.transfer.freeze_encoder
                                                             or self.transfer.encoder_lr_scale != 1.0):
            raise ValueError("transfer.freeze_encoder and transfer.encoder_lr_scale need a model with an encoder "
                             "(a UNetResnetConfig, e.g. preset = \"unet-resnet50\")")


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

    def __init__(self, windows: Dataset, criterion: SegmentationLoss, num_classes: int, batch_size: int,
                 names: list[str] | None = None):
        self.windows, self.criterion = windows, criterion
        self.num_classes, self.batch_size, self.names = num_classes, batch_size, names

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
        return {"valid_loss": loss_sum / max(mass_sum, 1e-12), **segmentation_metrics(confusion, names=self.names)}


class SegmentationExamples:
    """Writes the first ``count`` validation windows to TensorBoard: the output window of the
    image, the true mask and the predicted one, in the class colours (pixels scored elsewhere black)."""

    def __init__(self, windows: ValidationWindows, count: int, colours: list[tuple[int, int, int]]):
        self.windows, self.count, self.colours = windows, min(count, len(windows)), colours

    def __call__(self, writer, model: nn.Module, step: int, device: torch.device) -> None:
        top, left = self.windows.shape.context
        height, width = self.windows.shape.output
        for index in range(self.count):
            image, mask, *_ = self.windows[index]
            predicted = model(image[None].to(device))[0].argmax(0).cpu()
            writer.add_image(f"example{index}/image", image[:, top:top + height, left:left + width], step)
            for name, labels in (("truth", mask), ("prediction", predicted)):
                writer.add_image(f"example{index}/{name}", colourise(labels, self.colours), step, dataformats="HWC")


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


def keep_batch_norm_frozen(model: nn.Module) -> None:
    """BatchNorm layers back in eval mode (``transfer.freeze_bn``): they normalise with their
    running statistics and do not update them."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def encoder_parameter_groups(model: nn.Module, transfer: TransferConfig):
    """``() -> parameter groups``: the decoder's at the learning rate, the encoder's (unless frozen)
    at ``transfer.encoder_lr_scale`` times it."""
    def groups() -> list[dict]:
        decoder = [p for p in model.decoder_parameters() if p.requires_grad]
        encoder = [p for p in model.encoder_parameters() if p.requires_grad]
        return [{"params": decoder}] + ([{"params": encoder, "lr_scale": transfer.encoder_lr_scale}] if encoder else [])
    return groups


def initial_model(config: UNet2dConfig | UNetResnetConfig, transfer: TransferConfig) -> tuple[nn.Module, dict]:
    """The freshly initialised model of a recipe, its pretrained encoder loaded and its encoder
    frozen as the recipe says; and what to record of that in the checkpoints' metadata."""
    model = model_from_config(config)
    notes = {}
    if isinstance(config, UNetResnetConfig) and config.encoder_weights:
        from ..models.pretrained import load_encoder_weights

        notes["encoder_weights"] = load_encoder_weights(model, config.encoder_weights).describe()
    if transfer.freeze_encoder:
        model.encoder.requires_grad_(False)
    return model, notes


def build_image_task(recipe: ImageRecipe, processes: Processes, device: torch.device) -> Task:
    """The model, the training stream and the validation of ``recipe`` for one process."""
    config, train, transfer = recipe.model, recipe.train, recipe.transfer
    model, notes = initial_model(config, transfer)
    if notes and processes.is_main:
        tqdm.write(f"encoder: {notes['encoder_weights']}")
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
                                     f"{shape.output[0]}x{shape.output[1]} output pixels", **notes}
    if data.classes is not None:
        metadata["classes"] = {name: list(colour) for name, colour in data.classes.items()}  # for image segment
    return Task(model=model, criterion=criterion, stream=stream,
                validate=SegmentationValidation(windows, criterion, config.classes,
                                                train.valid_batch_size, names=data.class_names),
                log_examples=SegmentationExamples(windows, train.log_examples,
                                                  class_colours(config.classes, data.classes)),
                metadata=metadata,
                parameter_groups=encoder_parameter_groups(model, transfer) if isinstance(config, UNetResnetConfig) else None,
                train_mode=keep_batch_norm_frozen if transfer.freeze_bn else None)


TASK = TaskKind(ImageRecipe, build_image_task, PATH_KEYS)
