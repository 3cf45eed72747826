"""The training loop, shared by every task (audio separation, image segmentation).

A :class:`Task` supplies what differs between tasks: the model, the loss, the stream of training
batches and the validation metrics. :class:`Trainer` supplies the rest, following the Wave-U-Net
paper's procedure:

1. train in epochs of ``epoch_size`` optimiser steps; after each, validate;
2. stop the round after ``patience`` validations without improvement (early stopping);
3. fine-tuning round: restart from the best model with the batch multiplied by
   ``finetune.batch_factor`` and learning rate ``finetune.lr``, with the same early stopping.

It writes the run folder (:mod:`waveunet.train.rundir`): ``metrics.jsonl``, TensorBoard logs,
``checkpoints/best.pt`` on every improvement and ``checkpoints/last.pt`` after every epoch and
whenever the run stops early (step or time budget, Ctrl-C, SIGTERM). ``last.pt`` holds the
position in the batch stream, the running training loss of the epoch, the optimiser, scheduler,
early-stopping, AMP-scaler and random-generator states, so a resumed run takes exactly the steps
the uninterrupted run would have taken.

Batches are ``(inputs, targets)`` or ``(inputs, *targets)``; the loss is
``criterion(model(inputs), targets)`` computed in float32, ``targets`` being the one tensor or the
tuple of the rest (e.g. ``(mask, pixel_weights)`` for segmentation).
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..atomic import remove_stale_temporaries
from ..checkpoint import read_checkpoint, save_model
from ..errors import WaveUNetError
from . import distributed
from .config import TrainConfig
from .distributed import Processes
from .optim import current_lr, make_optimizer, make_schedule
from .rundir import RunDir
from .state import EarlyStopping, rng_state, seed_everything, set_rng_state
from .stream import BatchStream, to_device

#: ``validate(model, device) -> {"valid_loss": ..., ...}``; called in eval mode without gradients
Validate = Callable[[nn.Module, torch.device], dict[str, float]]
#: ``log_examples(writer, model, step, device)``: write example predictions to TensorBoard
LogExamples = Callable[[Any, nn.Module, int, torch.device], None]


@dataclass
class Task:
    """The task-specific half of training.

    Attributes:
        model: the network (with a ``.config``, as :func:`waveunet.save_model` needs).
        criterion: ``(outputs, targets) -> scalar loss``.
        stream: the training batches (see :class:`waveunet.train.stream.BatchStream`).
        validate: the validation metrics; must include the early-stopping ``monitor`` key.
        log_examples: optional; writes example predictions to TensorBoard after each validation.
        metadata: stored in every checkpoint's metadata (e.g. a description of the training data).
        parameter_groups: optional; the optimiser's parameter groups (default: all parameters in
            one), each ``{"params": [...], "lr_scale": s}`` trained at ``s`` times the learning rate.
        train_mode: optional; called on the model after ``model.train()`` before every step (e.g.
            to keep BatchNorm layers in eval mode).
    """

    model: nn.Module
    criterion: Callable[[torch.Tensor, Any], torch.Tensor]
    stream: BatchStream
    validate: Validate
    log_examples: LogExamples | None = None
    metadata: dict = field(default_factory=dict)
    parameter_groups: Callable[[], list[dict]] | None = None
    train_mode: Callable[[nn.Module], None] | None = None


@dataclass(frozen=True)
class TaskKind:
    """A kind of task the trainer can run (``waveunet.train.audio.TASK``, ``waveunet.train.image.TASK``).

    Attributes:
        recipe_class: the recipe dataclass; it must have ``model`` and ``train: TrainConfig`` fields.
        build_task: ``(recipe, processes, device) -> Task``.
        path_keys: dotted recipe keys holding paths (relative paths in a recipe file are relative to it).
    """

    recipe_class: type
    build_task: Callable
    path_keys: tuple[str, ...] = ()


@dataclass
class Progress:
    """Where the run is; saved in ``last.pt``.

    ``epoch`` counts completed epochs over both rounds; ``position`` is the number of steps done in
    the current epoch; ``loss_sum``/``loss_count`` accumulate the epoch's training loss.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    round: int = 1
    loss_sum: float = 0.0
    loss_count: int = 0
    finished: bool = False
    elapsed: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    """How a call to :meth:`Trainer.fit` ended, and the model as it is then (on its device)."""

    step: int
    epoch: int
    round: int
    finished: bool
    best: float | None
    stopped_by: str
    model: nn.Module | None = field(default=None, compare=False, repr=False)
    #: the signal that stopped the run on this process ("SIGINT", "SIGTERM"), "" if none did
    signal: str = ""


class Trainer:
    """Trains ``task.model`` under ``config``, writing ``run`` (on rank 0 only)."""

    def __init__(self, task: Task, config: TrainConfig, run: RunDir, processes: Processes = Processes(),
                 device: torch.device | str = "cpu", progress: bool = True):
        self.task, self.config, self.run, self.processes = task, config, run, processes
        self.device = torch.device(device)
        self.progress_bars = progress and processes.is_main
        self.model = task.model.to(self.device)
        self.net = self.model
        if processes.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp) if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # training shapes never change: pick the fastest kernels once
        self.state = Progress()
        self.stopping = EarlyStopping(config.early_stopping)
        self.best_weights: dict | None = None
        self._start_round_optimizer()
        self.writer = None
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------ rounds and batch sizes

    def _start_round_optimizer(self) -> None:
        lr = self.config.optimizer.lr if self.state.round == 1 else self.config.finetune.lr
        groups = self.task.parameter_groups() if self.task.parameter_groups is not None else self.model.parameters()
        self.optimizer = make_optimizer(groups, self.config.optimizer, lr)
        self.scheduler = make_schedule(self.optimizer, self.config.scheduler, self.config.early_stopping.mode,
                                       self.config.epoch_size)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    @property
    def global_batch(self) -> int:
        factor = self.config.finetune.batch_factor if self.state.round == 2 else 1
        return self.config.batch_size * factor

    @property
    def rank_batch(self) -> int:
        """Examples per step on this process: the recipe's batch is the job's, split over the ranks."""
        world = self.processes.world_size
        if self.global_batch % world:
            raise WaveUNetError(f"train.batch_size {self.global_batch} cannot be split evenly over {world} processes")
        return self.global_batch // world

    def _start_finetuning(self) -> None:
        """The paper's second round: best model, larger batch, smaller learning rate."""
        self.model.load_state_dict(self.best_weights)
        self.state.round = 2
        self._start_round_optimizer()
        self.stopping.restart()
        self._message(f"fine-tuning round: from the best model ({self.config.early_stopping.monitor} "
                      f"{self.stopping.best:.6g}), batch {self.global_batch}, lr {self.config.finetune.lr:g}")

    # ------------------------------------------------------------------ checkpoints

    def _training_state(self) -> dict:
        return {"progress": vars(self.state).copy(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "stopping": self.stopping.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "world_size": self.processes.world_size}

    def _metadata(self, **extra) -> dict:
        return {**self.task.metadata, "epoch": self.state.epoch, "round": self.state.round, **extra}

    def save_last(self) -> None:
        if self.processes.is_main:
            save_model(self.model, self.run.last, step=self.state.step, metadata=self._metadata(),
                       training=self._training_state())

    def resume(self) -> None:
        """Load ``last.pt`` (every rank reads it: the run folder must be visible to all nodes)."""
        ckpt = read_checkpoint(self.run.last, full=True)
        training = ckpt.get("training")
        if not training:
            raise WaveUNetError(f"{self.run.last}: holds no training state to resume from")
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError:
            raise WaveUNetError(f"{self.run.last}: its weights do not fit the recipe's model") from None
        self.state = Progress(**training["progress"])
        self._start_round_optimizer()
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        self.scaler.load_state_dict(training["scaler"])
        self.stopping.load_state_dict(training["stopping"])
        if self.processes.is_main:
            set_rng_state(training["rng"])
        if self.run.best.is_file():
            self.best_weights = read_checkpoint(self.run.best)["state_dict"]
        if self.processes.is_main:
            self.run.truncate_metrics(self.state.step)
        s = self.state
        self._message(f"resumed from {self.run.last} at step {s.step} (round {s.round}, epoch {s.epoch + 1}, "
                      f"{s.position} of its {self.config.epoch_size} steps done)")

    # ------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False) -> TrainResult:
        if self.processes.is_main:  # what a killed run was writing (kill -9 leaves its temporary files)
            for folder in (self.run.root, self.run.last.parent):
                remove_stale_temporaries(folder)
        if resume:
            self.resume()
        else:
            # Each rank its own seed; the batch stream is seeded by example index (see stream.py).
            seed_everything(self.config.seed + self.processes.rank)
        if self.state.finished:
            self._message("this run has finished already (early stopping); nothing to do")
            return self._result("finished")
        if self.processes.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run.tensorboard), purge_step=self.state.step or None)
        if self.amp_dtype is None and self.config.amp != "none":
            self._message(f"train.amp = {self.config.amp!r} needs CUDA; training in float32 on {self.device}")
        started = time.monotonic()
        elapsed_before = self.state.elapsed
        stopped_by = ""
        with _StopSignals() as signals:
            while not self.state.finished and not stopped_by:
                stopped_by = self._train_epoch(started, signals)
                self.state.elapsed = elapsed_before + time.monotonic() - started
                if self.state.position == self.config.epoch_size:
                    self._end_epoch()
                if stopped_by:
                    self.save_last()
        if self.writer is not None:
            self.writer.close()
        stopped_by = stopped_by or "early stopping"
        self._message(f"stopped after {self.state.step} steps ({stopped_by}); best "
                      f"{self.config.early_stopping.monitor} {self.stopping.best}")
        return self._result(stopped_by, signals.received if signals.received and signals.received in stopped_by else "")

    def _result(self, stopped_by: str, signal_name: str = "") -> TrainResult:
        s = self.state
        return TrainResult(s.step, s.epoch, s.round, s.finished, self.stopping.best, stopped_by, self.model,
                           signal_name)

    def _train_epoch(self, started: float, signals: _StopSignals) -> str:
        """Steps until the epoch ends or a budget stops the run; returns why it stopped ("" if it did not)."""
        s, c = self.state, self.config
        bar = tqdm(total=c.epoch_size, initial=s.position, desc=f"round {s.round} epoch {s.epoch + 1}",
                   unit="step", disable=not self.progress_bars, dynamic_ncols=True, leave=False)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        stopped_by = self._budget_exhausted(started, signals)
        try:
            for batch in ([] if stopped_by else self.task.stream.batches(s.epoch, s.position, self.rank_batch)):
                loss_sum += self._step(batch).double()
                count += 1
                s.step += 1
                s.position += 1
                bar.update()
                if s.step % c.log_every == 0 or s.position == c.epoch_size:
                    mean = (s.loss_sum + loss_sum.item()) / (s.loss_count + count)
                    bar.set_postfix(loss=f"{mean:.3g}")
                    if self.writer is not None:
                        self.writer.add_scalar("loss/train", mean, s.step)
                        self.writer.add_scalar("learning_rate", current_lr(self.optimizer), s.step)
                stopped_by = self._budget_exhausted(started, signals)
                if stopped_by or s.position == c.epoch_size:
                    break
        finally:
            bar.close()
        s.loss_sum += loss_sum.item()
        s.loss_count += count
        return stopped_by

    def _step(self, batch) -> torch.Tensor:
        """One optimiser step; returns the batch's loss (detached)."""
        inputs, *targets = to_device(batch, self.device)
        targets = targets[0] if len(targets) == 1 else tuple(targets)
        self.scheduler.before_step(self.state.position)
        self.net.train()
        if self.task.train_mode is not None:
            self.task.train_mode(self.model)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.net(inputs)
        loss = self.task.criterion(outputs.float(), targets)
        if not torch.isfinite(loss):
            raise WaveUNetError(f"{self.run.root}: the training loss became {loss.item()} at step {self.state.step + 1}; "
                                f"lower train.optimizer.lr (or use train.amp = \"bf16\" instead of fp16)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def _budget_exhausted(self, started: float, signals: _StopSignals) -> str:
        c = self.config
        reason = ""
        if c.max_steps and self.state.step >= c.max_steps:
            reason = f"train.max_steps = {c.max_steps}"
        elif c.max_time and time.monotonic() - started >= c.max_time:
            reason = f"train.max_time = {c.max_time:g} s"
        elif signals.received:
            reason = f"{signals.received}; continue with --resume"
        # Clocks and signals differ between ranks: all must stop at the same step.
        if distributed.any_rank(bool(reason), self.processes, self.device) and not reason:
            reason = "another process stopped"
        return reason

    def _end_epoch(self) -> None:
        """Validate, log, apply early stopping and the schedule, save checkpoints."""
        s, c = self.state, self.config
        train_loss = distributed.mean_over_ranks(s.loss_sum / max(s.loss_count, 1), self.processes, self.device)
        metrics = distributed.broadcast(self._validate() if self.processes.is_main else None, self.processes)
        monitor = c.early_stopping.monitor
        if monitor not in metrics:
            raise WaveUNetError(f"train.early_stopping.monitor = {monitor!r} but validation reports only "
                                f"{', '.join(metrics)}")
        s.epoch += 1
        s.position, s.loss_sum, s.loss_count = 0, 0.0, 0
        record = {"step": s.step, "epoch": s.epoch, "round": s.round, "train_loss": train_loss, **metrics,
                  "lr": current_lr(self.optimizer), "elapsed": round(s.elapsed, 3)}
        improved = self.stopping.update(metrics[monitor])
        self.scheduler.after_epoch(metrics[monitor])
        if improved:
            self.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        if self.processes.is_main:
            self.run.append_metrics({**record, "best": improved})
            self._log_validation(record)
            if improved:
                save_model(self.model, self.run.best, step=s.step, metadata=self._metadata(**metrics))
        if self.stopping.should_stop:
            if s.round == 1 and c.finetune.enabled and self.best_weights is not None:
                self._start_finetuning()
            else:
                s.finished = True
        self.save_last()

    def _validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.task.validate(self.model, self.device).items()}
        self.model.train()
        return metrics

    def _log_validation(self, record: dict) -> None:
        monitor = self.config.early_stopping.monitor
        line = (f"round {record['round']} epoch {record['epoch']} step {record['step']}: "
                f"train_loss {record['train_loss']:.6g}, {monitor} {record[monitor]:.6g}"
                f"{' (best)' if self.stopping.bad_epochs == 0 else f' (no improvement for {self.stopping.bad_epochs})'}")
        self._message(line)
        if self.writer is None:
            return
        for key, value in record.items():
            if key not in ("step", "epoch", "round", "elapsed", "lr") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"loss/{key[:-5]}" if key.endswith("_loss") else f"metrics/{key}", value, record["step"])
        if self.task.log_examples is not None and self.config.log_examples:
            self.model.eval()
            with torch.no_grad():
                self.task.log_examples(self.writer, self.model, record["step"], self.device)
            self.model.train()
        self.writer.flush()

    def _message(self, text: str) -> None:
        if self.processes.is_main:
            tqdm.write(text)
            sys.stdout.flush()  # seen at once in log files, where stdout is block-buffered


class _StopSignals:
    """Turns Ctrl-C and SIGTERM (sent by cluster schedulers before a kill) into a clean stop after
    the current step; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.received: str = ""
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                # a signal the process was started ignoring (``nohup``, a background job) stays
                # ignored, as Python leaves an ignored SIGINT and as separation does
                if signal.getsignal(sig) != signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


__all__ = ["Task", "TaskKind", "Trainer", "TrainResult", "Progress"]
