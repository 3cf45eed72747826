"""From a recipe file to a finished run: what ``waveunet train`` (and ``waveunet image train``) do.

1. read the recipe, apply ``--set`` overrides, check every key (:func:`read_recipe`);
2. check the run folder (another run there needs ``--resume`` or ``--force``; a resumed run must
   use the same recipe, apart from the settings in :data:`~waveunet.train.config.RUN_CONTROL_KEYS`);
3. join the ``torchrun`` job, if any, and pick the device;
4. build the task (model and data; rank 0 first, so that it alone builds the data cache);
5. write ``config.toml`` and train (:class:`~waveunet.train.trainer.Trainer`).

Everything that can fail because of the recipe or the data fails in steps 1-4, before the run
folder is touched.

A task is named by a key of :data:`TASKS` (``audio``, ``image``); its module defines ``TASK``, a
:class:`~waveunet.train.trainer.TaskKind`, and is imported only when that task runs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import WaveUNetError
from . import distributed
from .config import RUN_CONTROL_KEYS
from .recipe import apply_overrides, dump_toml, expand_preset, from_dict, load_toml, resolve_paths, to_dict
from .rundir import RunDir
from .state import seed_everything
from .trainer import TaskKind, Trainer, TrainResult

#: task name -> the module that defines its ``TASK``
TASKS = {"audio": "waveunet.train.audio", "image": "waveunet.train.image"}


def task_kind(task: str) -> TaskKind:
    """The :class:`TaskKind` called ``task`` (its module imported now)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} ({', '.join(TASKS)})")
    return importlib.import_module(TASKS[task]).TASK


def read_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), task: str = "audio"):
    """The typed recipe of ``task`` at ``path`` with ``overrides`` (``section.key=value``) applied.

    Paths in the file are relative to the file; paths given in ``overrides`` are relative to the
    working directory.
    """
    kind = task_kind(task)
    path = Path(path)
    table = resolve_paths(load_toml(path), list(kind.path_keys), path.resolve().parent)
    table = resolve_paths(apply_overrides(table, list(overrides)), list(kind.path_keys), Path.cwd())
    if "model" in table:
        table["model"] = expand_preset(table["model"], str(path))
    return from_dict(kind.recipe_class, table, str(path))


def flatten(table: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_recipe(run: RunDir, resolved: dict) -> None:
    """A resumed run must train the same model on the same data in the same way."""
    before = flatten(load_toml(run.config)) if run.config.is_file() else {}
    now = flatten(resolved)
    for key in sorted(set(before) | set(now)):
        if key not in RUN_CONTROL_KEYS and before.get(key) != now.get(key):
            raise WaveUNetError(f"{run.config}: the run was made with {key} = {before.get(key)!r}, the recipe now "
                                f"says {now.get(key)!r}; resume with the run's own recipe or start a new run")


def train_from_recipe(recipe_path: str | os.PathLike, out: str | os.PathLike, overrides: Sequence[str] = (), *,
                      resume: bool = False, force: bool = False, task: str = "audio",
                      progress: bool = True) -> TrainResult:
    """Train ``task`` (``audio`` or ``image``) as ``recipe_path`` (plus ``overrides``) says, into the run folder ``out``."""
    kind = task_kind(task)
    recipe = read_recipe(recipe_path, overrides, task)
    resolved = to_dict(recipe)
    run = RunDir(Path(out))
    run.check(resume=resume, force=force)
    if resume:
        check_same_recipe(run, resolved)
    processes, device = distributed.setup(recipe.train.device)
    try:
        seed_everything(recipe.train.seed)  # the same initial weights on every rank
        if not processes.is_main:
            distributed.barrier(processes)  # wait for rank 0 to build the data cache
        work = kind.build_task(recipe, processes, device)
        if processes.is_main:
            run.prepare(resume=resume, force=force)
            run.write_config(f"# resolved from {Path(recipe_path).resolve()}\n" + dump_toml(resolved))
            distributed.barrier(processes)
        trainer = Trainer(work, recipe.train, run, processes, device, progress=progress)
        return trainer.fit(resume=resume)
    finally:
        distributed.teardown()
