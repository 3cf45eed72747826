"""Optimisers, learning-rate schedules and the regression losses named in recipes."""

from __future__ import annotations

import torch
from torch import nn

from .config import OptimizerConfig, SchedulerConfig


def make_optimizer(parameters, config: OptimizerConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam(lr, betas, eps) or SGD(lr, momentum); ``lr`` overrides the config's (fine-tuning round)."""
    lr = config.lr if lr is None else lr
    if config.name == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


class ConstantLR:
    """The paper's schedule: none. Same interface as ReduceLROnPlateau so the loop need not care."""

    def step(self, metric: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig, mode: str):
    """A per-epoch schedule stepped with the monitored validation metric."""
    if config.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=config.factor,
                                                          patience=config.patience, min_lr=config.min_lr)
    return ConstantLR()


def regression_loss(name: str) -> nn.Module:
    """``mse`` (the paper) or ``l1``, averaged over every element: sources, channels and time."""
    return nn.MSELoss() if name == "mse" else nn.L1Loss()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]
