"""Training: one trainer for every task, recipes, run folders, resuming and multi-process training.

- :mod:`~waveunet.train.recipe`: TOML recipes into typed dataclasses, ``--set`` overrides;
- :mod:`~waveunet.train.config`: the ``[train]`` section (optimiser, early stopping, budget, hardware);
- :mod:`~waveunet.train.trainer`: the loop (:class:`Trainer`) and what a task plugs in (:class:`Task`);
- :mod:`~waveunet.train.audio`: Wave-U-Net separation as a task;
- :mod:`~waveunet.train.launch`: recipe file -> run folder (what the CLI calls);
- :mod:`~waveunet.train.rundir`, :mod:`~waveunet.train.distributed`, :mod:`~waveunet.train.stream`.
"""

from .config import TrainConfig
from .launch import AUDIO, TaskKind, read_recipe, train_from_recipe
from .rundir import RunDir
from .trainer import Task, Trainer, TrainResult

__all__ = ["TrainConfig", "Task", "Trainer", "TrainResult", "RunDir", "TaskKind", "AUDIO", "read_recipe",
           "train_from_recipe"]
