"""The ``[train]`` section of a recipe: optimisation, early stopping, budget and hardware.

Task-independent: audio and image recipes share it. Defaults are the Wave-U-Net paper's set-up
(Adam 1e-4, batch 16, epochs of 2000 iterations, patience 20, then a fine-tuning round with the
batch doubled and lr 1e-5 from the best model)::

    [train]
    batch_size = 16          # global: split over the processes of a distributed job
    epoch_size = 2000        # iterations (optimiser steps) between validations
    loss = "mse"
    seed = 0
    device = "auto"          # auto | cpu | cuda | cuda:1
    workers = 2              # DataLoader worker processes per training process
    amp = "none"             # none | bf16 | fp16 (CUDA only; ignored on CPU)
    max_steps = 0            # stop after this many steps in all (0: no limit)
    max_time = 0             # stop this invocation after so many seconds (0: no limit)
    valid_batch_size = 16    # validation batches (the validation loss is a mean over examples)
    log_every = 10           # steps between training-loss points in TensorBoard
    log_examples = 1         # validation examples written to TensorBoard after each validation

    [train.optimizer]
    name = "adam"            # adam | sgd
    lr = 1e-4
    betas = [0.9, 0.999]

    [train.scheduler]
    name = "constant"        # constant | plateau | cyclic (see SchedulerConfig)

    [train.early_stopping]
    patience = 20
    monitor = "valid_loss"
    mode = "min"

    [train.finetune]
    enabled = true
    lr = 1e-5
    batch_factor = 2
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: regression losses (audio) and segmentation losses (images); each task refuses the other kind
REGRESSION_LOSSES = ("mse", "l1")
SEGMENTATION_LOSSES = ("cross_entropy", "dice")
LOSSES = REGRESSION_LOSSES + SEGMENTATION_LOSSES
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("constant", "plateau", "cyclic")
AMP = ("none", "bf16", "fp16")


def _choose(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimiser: Adam (``lr``, ``betas``) or SGD with ``momentum`` (the U-Net paper's 0.99)."""

    name: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.99
    weight_decay: float = 0.0

    def __post_init__(self):
        _choose("train.optimizer.name", self.name, OPTIMIZERS)
        if not self.lr > 0:
            raise ValueError(f"train.optimizer.lr must be positive; got {self.lr}")


@dataclass(frozen=True)
class SchedulerConfig:
    """Learning-rate schedule: ``constant`` (the paper), ``plateau`` (multiply by ``factor`` after
    ``patience`` epochs without improvement of the monitored metric, down to ``min_lr``) or
    ``cyclic`` (the PyTorch Wave-U-Net's: ``cycles`` cosine cycles per epoch from lr to ``min_lr``)."""

    name: str = "constant"
    factor: float = 0.5
    patience: int = 5
    min_lr: float = 0.0
    cycles: int = 2

    def __post_init__(self):
        _choose("train.scheduler.name", self.name, SCHEDULERS)
        if self.cycles < 1:
            raise ValueError(f"train.scheduler.cycles must be at least 1; got {self.cycles}")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """End a round after ``patience`` validations in a row that do not improve ``monitor``
    (a key of the validation metrics) by more than ``min_delta`` in direction ``mode``."""

    patience: int = 20
    monitor: str = "valid_loss"
    mode: str = "min"
    min_delta: float = 0.0

    def __post_init__(self):
        _choose("train.early_stopping.mode", self.mode, ("min", "max"))
        if self.patience < 1:
            raise ValueError(f"train.early_stopping.patience must be at least 1; got {self.patience}")


@dataclass(frozen=True)
class FineTuneConfig:
    """The paper's second round: from the best model, batch times ``batch_factor``, lr ``lr``,
    the same early stopping."""

    enabled: bool = True
    lr: float = 1e-5
    batch_factor: int = 2

    def __post_init__(self):
        if self.batch_factor < 1:
            raise ValueError(f"train.finetune.batch_factor must be at least 1; got {self.batch_factor}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run that is not the model or the data."""

    batch_size: int = 16
    epoch_size: int = 2000
    loss: str = "mse"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    amp: str = "none"
    max_steps: int = 0
    max_time: float = 0.0
    valid_batch_size: int = 16
    log_every: int = 10
    log_examples: int = 1

    def __post_init__(self):
        _choose("train.loss", self.loss, LOSSES)
        _choose("train.amp", self.amp, AMP)
        if self.batch_size < 1 or self.epoch_size < 1 or self.valid_batch_size < 1:
            raise ValueError("train.batch_size, train.epoch_size and train.valid_batch_size must be positive")
        if self.workers < 0 or self.max_steps < 0 or self.max_time < 0 or self.log_every < 1 or self.log_examples < 0:
            raise ValueError("train.workers, max_steps, max_time and log_examples must be >= 0 and log_every >= 1")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")


#: keys that may differ between a run and its ``--resume``: they steer the run, not its result
RUN_CONTROL_KEYS = ("train.max_steps", "train.max_time", "train.device", "train.workers", "train.log_every",
                    "train.log_examples", "train.valid_batch_size", "data.cache_dir")
