"""Choosing the torch device: the one rule every command (separate, train, evaluate, segment) follows."""

from __future__ import annotations

import torch

from .errors import WaveUNetError


def resolve_device(device: str | torch.device | None, local_rank: int = 0, what: str = "device") -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` or None (CUDA when there is one).

    Plain ``cuda`` means this process's GPU, ``cuda:local_rank`` (one process per GPU under
    torchrun). ``what`` names the setting in errors (e.g. ``train.device``).
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise WaveUNetError(f"{what} {str(device)!r}: choose cpu, cuda or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise WaveUNetError(f"{what} {str(device)!r}: choose cpu, cuda or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WaveUNetError(f"{what} {str(device)!r}: PyTorch sees no CUDA GPU on this machine (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise WaveUNetError(f"{what} {str(device)!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device
