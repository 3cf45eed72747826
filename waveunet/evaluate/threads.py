"""Torch's CPU threads for evaluations running at once, without oversubscribing the cores.

``torch.set_num_threads`` acts on the calling thread only (OpenMP's thread count is a per-thread
setting), so every thread that computes sets its own: an evaluation on one of ``jobs`` worker
threads (``waveunet evaluate --jobs``) uses ``cores // jobs`` torch threads, and shares them with
the helper thread it starts to factor the per-source systems beside the joint one's block Schur
recursion (:func:`with_helper_thread`). The number of
cores is torch's thread count when the jobs start.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable

import torch

_state = {"jobs": 1, "cores": None}
_lock = threading.Lock()


@contextmanager
def parallel_evaluations(jobs: int):
    """Within: ``jobs`` evaluations run at once, each on ``cores // jobs`` torch threads."""
    with _lock:
        saved = dict(_state)
        _state["jobs"], _state["cores"] = max(1, int(jobs)), torch.get_num_threads()
    try:
        yield
    finally:
        with _lock:
            _state.update(saved)


def threads_per_evaluation() -> int:
    cores = _state["cores"] or torch.get_num_threads()
    return max(1, cores // _state["jobs"])


@contextmanager
def cpu_threads(device: torch.device):
    """This thread's torch threads set to its share of the cores while inside, then restored."""
    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads_per_evaluation() if _state["cores"] else saved)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextmanager
def with_helper_thread():
    """Split this thread's torch threads with one helper thread running meanwhile: yields a
    wrapper for the helper's function (which runs with the other half)."""
    threads = torch.get_num_threads()
    mine = max(1, threads // 2)
    theirs = max(1, threads - mine)

    def wrap(function: Callable) -> Callable:
        def run(*args, **kwargs):
            saved = torch.get_num_threads()
            torch.set_num_threads(theirs)
            try:
                return function(*args, **kwargs)
            finally:
                torch.set_num_threads(saved)

        return run

    torch.set_num_threads(mine)
    try:
        yield wrap
    finally:
        torch.set_num_threads(threads)
