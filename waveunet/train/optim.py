"""Optimisers, learning-rate schedules and the regression losses named in recipes."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimizerConfig, SchedulerConfig


def make_optimizer(parameters, config: OptimizerConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam(lr, betas, eps) or SGD(lr, momentum); ``lr`` overrides the config's (fine-tuning round).

    ``parameters`` are parameters, or parameter groups (dicts) of which each may carry an
    ``lr_scale``: it then trains at ``lr_scale * lr`` (a pretrained encoder at a tenth, say).
    """
    lr = config.lr if lr is None else lr
    parameters = list(parameters)
    if parameters and isinstance(parameters[0], dict):
        parameters = [{**group, "lr": lr * group.get("lr_scale", 1.0)} for group in parameters]
    if config.name == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


class Schedule:
    """A learning-rate schedule: ``constant`` (the Wave-U-Net paper) does nothing.

    ``before_step(position)`` runs before each optimiser step (``position``: steps done in the
    epoch), ``after_epoch(metric)`` after each validation.
    """

    def before_step(self, position: int) -> None:
        pass

    def after_epoch(self, metric: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Plateau(Schedule):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: SchedulerConfig, mode: str):
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=config.factor,
                                                                patience=config.patience, min_lr=config.min_lr)

    def after_epoch(self, metric: float) -> None:
        self.inner.step(metric)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class CyclicCosine(Schedule):
    """The PyTorch Wave-U-Net's schedule: every epoch holds ``cycles`` cosine cycles, each falling
    from the optimiser's learning rate to ``min_lr``. A function of the position in the epoch, so
    it has no state to save."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: SchedulerConfig, epoch_size: int):
        self.optimizer, self.min_lr, self.cycles, self.epoch_size = optimizer, config.min_lr, config.cycles, epoch_size
        first = optimizer.param_groups[0]
        self.max_lr = first["lr"] / first.get("lr_scale", 1.0)

    def before_step(self, position: int) -> None:
        length = max(self.epoch_size // self.cycles, 1)
        within = position - length * min(position // length, self.cycles - 1)
        lr = self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * within / length))
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)


def make_schedule(optimizer: torch.optim.Optimizer, config: SchedulerConfig, mode: str, epoch_size: int) -> Schedule:
    """The schedule ``config.name`` names, for ``optimizer``."""
    if config.name == "plateau":
        return Plateau(optimizer, config, mode)
    if config.name == "cyclic":
        return CyclicCosine(optimizer, config, epoch_size)
    return Schedule()


def regression_loss(name: str) -> nn.Module:
    """``mse`` (the paper) or ``l1``, averaged over every element: sources, channels and time."""
    return nn.MSELoss() if name == "mse" else nn.L1Loss()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]
