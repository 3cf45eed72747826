"""Choosing the torch device: the one rule every command (separate, train, evaluate, segment) follows."""

from __future__ import annotations

import torch

from .errors import WaveUNetError


def mps_available() -> bool:
    """Whether this PyTorch has Apple's Metal (MPS) backend and this machine can run it."""
    return torch.backends.mps.is_available()


def resolve_device(device: str | torch.device | None, local_rank: int = 0, what: str = "device", *,
                   mps: bool = False) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` | ``auto`` or None: CUDA when there is one, else the CPU.

    Plain ``cuda`` means this process's GPU, ``cuda:local_rank`` (one process per GPU under
    torchrun). ``what`` names the setting in errors (e.g. ``train.device``).

    ``mps``: whether the caller can run on Apple's MPS GPU (separation can; float64 scoring and
    distributed training cannot). Then ``auto`` picks CUDA, then MPS, then the CPU, and ``mps`` is
    accepted where torch has it.
    """
    choices = "cpu, cuda, mps or auto" if mps and torch.backends.mps.is_built() else "cpu, cuda or auto"
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps and mps_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise WaveUNetError(f"{what} {str(device)!r}: choose {choices}") from None
    if device.type == "mps" and mps:
        if not mps_available():
            raise WaveUNetError(f"{what} {str(device)!r}: PyTorch has no Apple MPS GPU on this machine (use cpu or auto)")
        return device
    if device.type not in ("cpu", "cuda"):
        raise WaveUNetError(f"{what} {str(device)!r}: choose {choices}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WaveUNetError(f"{what} {str(device)!r}: PyTorch sees no CUDA GPU on this machine (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise WaveUNetError(f"{what} {str(device)!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device
