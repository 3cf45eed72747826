"""Training: one trainer for every task, recipes, run folders, resuming and multi-process training.

- :mod:`~waveunet.train.recipe`: TOML recipes into typed dataclasses, ``--set`` overrides;
- :mod:`~waveunet.train.config`: the ``[train]`` section (optimiser, early stopping, budget, hardware);
- :mod:`~waveunet.train.trainer`: the loop (:class:`Trainer`) and what a task plugs in (:class:`Task`);
- :mod:`~waveunet.train.audio`, :mod:`~waveunet.train.image`: the two tasks (Wave-U-Net separation,
  2D U-Net segmentation), each imported only when it runs;
- :mod:`~waveunet.train.launch`: recipe file -> run folder (what the CLI calls);
- :mod:`~waveunet.train.rundir`, :mod:`~waveunet.train.distributed`, :mod:`~waveunet.train.stream`,
  :mod:`~waveunet.train.state`, :mod:`~waveunet.train.optim`: the trainer's parts.
"""

from .config import TrainConfig
from .launch import TASKS, read_recipe, task_kind, train_from_recipe
from .rundir import RunDir
from .trainer import Task, TaskKind, Trainer, TrainResult

__all__ = ["TrainConfig", "Task", "TaskKind", "Trainer", "TrainResult", "RunDir", "TASKS", "task_kind", "read_recipe",
           "train_from_recipe"]
