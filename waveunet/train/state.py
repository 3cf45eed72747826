"""The small pieces of training state a resumed run needs: early stopping and random generators."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from .config import EarlyStoppingConfig


@dataclass
class EarlyStopping:
    """Counts validations without improvement of the monitored metric.

    ``best`` is the best value seen in the whole run; it carries over into the fine-tuning round,
    which starts from the best model, so that round ends after ``patience`` validations that fail
    to beat it.
    """

    config: EarlyStoppingConfig
    best: float | None = None
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record one validation; True if it is a new best."""
        if self.improves(value):
            self.best, self.bad_epochs = value, 0
            return True
        self.bad_epochs += 1
        return False

    def improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.config.mode == "min":
            return value < self.best - self.config.min_delta
        return value > self.best + self.config.min_delta

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.config.patience

    def restart(self) -> None:
        """A new round: the patience counter starts again (the best value stays)."""
        self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


def rng_state() -> dict:
    """The state of every random generator a training step may use (Python, NumPy, torch, CUDA).

    Only tensors and Python scalars, so that a checkpoint holding it still loads with
    ``torch.load(weights_only=True)`` (``waveunet.load_model`` reads ``last.pt`` too).
    """
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

