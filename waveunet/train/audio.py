"""Audio source separation with the Wave-U-Net as a task of the shared trainer: recipe, loss, validation.

A Wave-U-Net recipe has four tables::

    [model]           preset = "M4" (plus any WaveUNetConfig field to change), or a full config
    [data]            waveunet.data.config.DataConfig: format, root, splits, ...
    [augmentation]    waveunet.data.augment.Augmentation: gain, gain_range, channel_swap, remix
    [train]           waveunet.train.config.TrainConfig

Training examples are random excerpts of the model's input length, targets cut to its output
window; validation is the mean loss over fixed, evenly tiled excerpts of the validation tracks
(the same in every run, so validation losses compare across runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.augment import Augmentation
from ..data.config import DataConfig, training_examples, validation_examples
from ..models.config import WaveUNetConfig
from ..models.registry import model_from_config
from .config import REGRESSION_LOSSES, TrainConfig
from .distributed import Processes
from .optim import regression_loss
from .stream import IndexedBatches, to_device
from .trainer import Task, TaskKind

#: recipe keys holding paths; relative paths in a recipe file are relative to that file
PATH_KEYS = ["data.root", "data.valid_root", "data.cache_dir"]


@dataclass(frozen=True)
class AudioRecipe:
    """A Wave-U-Net training recipe."""

    model: WaveUNetConfig
    data: DataConfig
    augmentation: Augmentation = field(default_factory=Augmentation)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.train.loss not in REGRESSION_LOSSES:
            raise ValueError(f"train.loss must be one of {', '.join(REGRESSION_LOSSES)} for audio; got {self.train.loss!r}")


class ValidationLoss:
    """Mean loss of the model over a fixed set of excerpts: ``{"valid_loss": ...}``.

    Batched with ``batch_size``; the mean is over examples, so it does not depend on the batching.
    """

    def __init__(self, examples: Dataset, criterion: nn.Module, batch_size: int):
        self.examples, self.criterion, self.batch_size = examples, criterion, batch_size

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        total, count = 0.0, 0
        for mixture, targets in DataLoader(self.examples, batch_size=self.batch_size):
            mixture, targets = to_device((mixture, targets), device)
            total += self.criterion(model(mixture), targets).item() * len(mixture)
            count += len(mixture)
        return {"valid_loss": total / count}


class AudioExamples:
    """Writes ``count`` evenly spaced validation excerpts to TensorBoard (the middle one for
    ``count = 1``; track starts are often silent): the mixture (output window), and every source's
    estimate and target, downmixed to mono (TensorBoard plays mono only)."""

    def __init__(self, examples: Dataset, sources: tuple[str, ...], sample_rate: int, count: int):
        self.examples, self.sources, self.sample_rate = examples, sources, sample_rate
        count = min(count, len(examples))
        self.indices = [round((k + 1) * (len(examples) - 1) / (count + 1)) for k in range(count)]

    def __call__(self, writer, model: nn.Module, step: int, device: torch.device) -> None:
        for index in self.indices:
            mixture, targets = self.examples[index]
            estimates = model(mixture.unsqueeze(0).to(device))[0].cpu()  # [sources, channels, time]
            left = (mixture.shape[-1] - targets.shape[-1]) // 2
            clips = {"mixture": mixture[..., left:left + targets.shape[-1]]}
            for k, source in enumerate(self.sources):
                clips[f"{source}/estimate"], clips[f"{source}/target"] = estimates[k], targets[k]
            for name, clip in clips.items():
                mono = clip.mean(dim=0).clamp(-1.0, 1.0)
                writer.add_audio(f"example{index}/{name}", mono, step, sample_rate=self.sample_rate)


def build_audio_task(recipe: AudioRecipe, processes: Processes, device: torch.device) -> Task:
    """The model, the training stream and the validation of ``recipe`` for one process."""
    config, train = recipe.model, recipe.train
    model = model_from_config(config)
    geometry = dict(targets=config.sources, sample_rate=config.sample_rate, channels=config.channels,
                    input_length=model.input_length, output_length=model.output_length, progress=processes.is_main)
    valid = validation_examples(recipe.data, **geometry)
    examples = training_examples(recipe.data, augmentation=recipe.augmentation, seed=train.seed,
                                 epoch_size=train.epoch_size * train.batch_size, **geometry)
    stream = IndexedBatches(examples, train.epoch_size, processes.rank, processes.world_size, train.workers,
                            pin_memory=device.type == "cuda")
    criterion = regression_loss(train.loss)
    metadata = {"training_data": examples.cache.description, "validation_data": valid.cache.description,
                "training_examples": f"{model.input_length} input / {model.output_length} output samples"}
    return Task(model=model, criterion=criterion, stream=stream,
                validate=ValidationLoss(valid, criterion, train.valid_batch_size),
                log_examples=AudioExamples(valid, config.sources, config.sample_rate, train.log_examples),
                metadata=metadata)


TASK = TaskKind(AudioRecipe, build_audio_task, PATH_KEYS)
