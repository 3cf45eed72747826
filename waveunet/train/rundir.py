"""The run folder: what a training run leaves behind, and the rules for reusing one.

::

    RUN_DIR/
        config.toml            the resolved recipe (absolute paths; itself a valid recipe)
        metrics.jsonl          one JSON object per validation: step, epoch, round, train_loss, valid_loss, lr, ...
        checkpoints/last.pt    the latest state, with optimiser/scheduler/early-stopping/RNG state (for --resume)
        checkpoints/best.pt    the model with the best validation metric so far
        tensorboard/           TensorBoard event files (losses, learning rate, examples)

A folder that already holds a run is never overwritten silently: training into it needs
``--resume`` (continue it) or ``--force`` (delete the run's files and start afresh). Only rank 0
of a distributed job touches the folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import WaveUNetError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
RUN_FILES = (CONFIG, METRICS, CHECKPOINTS, TENSORBOARD)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def last(self) -> Path:
        return self.root / CHECKPOINTS / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / CHECKPOINTS / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_FILES)

    def check(self, *, resume: bool, force: bool) -> None:
        """Refuse to start where that would mix two runs (read-only: safe on every rank)."""
        if resume and force:
            raise WaveUNetError(f"{self.root}: --resume and --force contradict each other; choose one")
        if self.root.exists() and not self.root.is_dir():
            raise WaveUNetError(f"{self.root}: exists and is not a folder")
        if resume:
            if not self.last.is_file():
                raise WaveUNetError(f"{self.root}: nothing to resume ({self.last.relative_to(self.root)} not found)")
            return
        if self.holds_run() and not force:
            raise WaveUNetError(f"{self.root}: holds another run; use --resume to continue it or --force to replace it")

    def prepare(self, *, resume: bool, force: bool) -> None:
        """Create the folder; with ``force`` delete a previous run's files first (rank 0 only)."""
        if force and not resume:
            for name in RUN_FILES:
                path = self.root / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        try:
            (self.root / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WaveUNetError(f"{self.root}: cannot create the run folder ({error.strerror})") from None

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config, text)

    def append_metrics(self, record: dict) -> None:
        """Add one line to ``metrics.jsonl`` (flushed, so a crash loses at most that line)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop records after ``step``: on resume, validations the interrupted run made after its
        last checkpoint are redone, so they must not appear twice."""
        kept = [record for record in self.read_metrics() if record["step"] <= step]
        write_text_atomic(self.metrics, "".join(json.dumps(record) + "\n" for record in kept))
