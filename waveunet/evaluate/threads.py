"""Torch's CPU threads, shared among the BSSEval evaluations running at once in this process.

``torch.set_num_threads`` is process-wide: evaluations on several threads (``waveunet evaluate
--jobs``) would otherwise each ask for all cores and oversubscribe them. Each evaluation runs
inside :func:`cpu_threads`, which splits the threads among the evaluations inside and restores the
setting after the last one leaves.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

_threads_lock = threading.Lock()
_threads_users = {"single": 0, "shared": 0}
_threads_saved = 1


@contextmanager
def cpu_threads(device: torch.device, single: bool = False):
    """Share torch's CPU threads (process-wide) among the callers inside, restored after the last.

    Large transforms and products (correlations, refinement, framewise filtering) run on the
    callers' share of the threads: all of them for one evaluation, one each when as many score
    tracks at once (``waveunet evaluate --jobs``) as there are threads. ``single`` asks for one
    thread for everyone meanwhile: the Levinson recursion is thousands of small products, and on
    more threads each pays a fork/join, and on a busy machine a descheduled worker stalls every
    one of them (measured 4-10x slower with 2 threads than with 1 on 2 loaded cores).
    """
    global _threads_saved
    if device.type != "cpu":
        yield
        return
    kind = "single" if single else "shared"
    with _threads_lock:
        if sum(_threads_users.values()) == 0:
            _threads_saved = torch.get_num_threads()
        _threads_users[kind] += 1
        _share_threads()
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users[kind] -= 1
            if sum(_threads_users.values()) == 0:
                torch.set_num_threads(_threads_saved)
            else:
                _share_threads()


def _share_threads() -> None:
    """Set torch's threads for the callers now inside :func:`cpu_threads` (lock held)."""
    shared = 1 if _threads_users["single"] else max(1, _threads_saved // _threads_users["shared"])
    torch.set_num_threads(shared)


def one_cpu_thread(device: torch.device):
    """:func:`cpu_threads` with one thread for everyone meanwhile."""
    return cpu_threads(device, single=True)
