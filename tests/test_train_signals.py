"""A training run stopped by SIGINT or SIGTERM (what cluster schedulers send before a kill) saves
``checkpoints/last.pt`` after the step it is in, says so, exits with 130 or 143 (it did not
complete), and resumes from there, saying from which step of which checkpoint. A run killed with
SIGKILL mid-save leaves a temporary file that the next run removes.

The run is a real ``python -m waveunet.train`` subprocess, sent a real signal mid-way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from waveunet.checkpoint import read_checkpoint

from helpers import TINY_MODEL

DATA = Path(__file__).resolve().parent / "data" / "musdb18hq-sample"

RECIPE = TINY_MODEL + f"""
[data]
format = "musdb-hq"
root = "{DATA}"
train_split = "all"
valid_split = "all"

[train]
batch_size = 2
epoch_size = 1000000   # one endless epoch: only the signal stops it
workers = 0
log_every = 1
"""


def as_in_a_terminal() -> None:
    """SIGINT at its default in the child, as a shell gives a foreground command (the tests may run
    in the background, where SIGINT is ignored and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(tmp_path: Path, *extra: str, preexec=as_in_a_terminal) -> subprocess.Popen:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "waveunet.train", str(recipe), "--out", str(tmp_path / "run"),
                             "--no-progress", "--set", f'data.cache_dir="{tmp_path / "cache"}"', *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=preexec)


def wait_for_steps(run: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the run has logged training steps to TensorBoard (so it is inside the training loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list((run / "tensorboard").glob("events.*")) if (run / "tensorboard").is_dir() else []
        if events and events[0].stat().st_size > 200:
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.stdout.read()}")
        time.sleep(0.2)
    process.kill()
    pytest.fail("training did not start within the timeout")


def test_a_run_started_ignoring_sigint_keeps_ignoring_it(tmp_path):
    """As under ``nohup`` or ``&``: Ctrl-C is not for it; SIGTERM still stops it cleanly."""
    process = start_training(tmp_path, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_steps(tmp_path / "run", process)
    process.send_signal(signal.SIGINT)
    time.sleep(2.0)
    assert process.poll() is None  # still training
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "(SIGTERM; continue with --resume)" in output, output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_cleanly_and_the_run_resumes(tmp_path, sig):
    run = tmp_path / "run"
    process = start_training(tmp_path)
    wait_for_steps(run, process)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, output  # 130 (SIGINT), 143 (SIGTERM): the run did not complete
    assert f"({signal.Signals(sig).name}; continue with --resume)" in output, output
    assert "Traceback" not in output and "Error" not in output
    last = read_checkpoint(run / "checkpoints" / "last.pt", full=True)
    stopped_at = last["training"]["progress"]["step"]
    assert stopped_at >= 1 and last["metadata"]["step"] == stopped_at

    # what a SIGKILL during a save leaves behind: the next run removes it
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = run / "checkpoints" / f".last.pt.waveunet-{dead.pid}-0123abcd.partial"
    stale.write_bytes(b"half a checkpoint")

    resumed = start_training(tmp_path, "--resume", "--set", f"train.max_steps={stopped_at + 2}")
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output  # a budget the recipe set is a normal end
    assert (f"resumed from {run / 'checkpoints' / 'last.pt'} at step {stopped_at} (round 1, epoch 1, {stopped_at} of "
            f"its 1000000 steps done)") in output.splitlines()
    assert f"stopped after {stopped_at + 2} steps (train.max_steps" in output
    assert read_checkpoint(run / "checkpoints" / "last.pt", full=True)["training"]["progress"]["step"] == stopped_at + 2
    assert not stale.exists()
