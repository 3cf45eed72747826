"""Checkpoints: config + weights + metadata in one file, so the file alone rebuilds its model.

Layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "waveunet", "format_version": 1,
     "config": {"kind": "wave-u-net", ...},          # waveunet.models.config.config_to_dict
     "state_dict": {...},
     "metadata": {"sample_rate", "sources", "channels", "version", "step", ...},
     "training": {...}}                              # optional: optimiser/scheduler/RNG state

Writes are atomic (temporary file in the same folder, then ``os.replace``), so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .atomic import atomic_path
from .errors import WaveUNetError
from .models.config import WaveUNetConfig, config_from_dict, config_to_dict
from .models.registry import model_from_config

FORMAT = "waveunet"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def bundled_models() -> list[str]:
    """Names of the checkpoints shipped inside the package (``waveunet/pretrained/<name>.pt``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A bundled name (e.g. ``demo``) or a path -> an existing file path."""
    path = Path(path_or_name)
    if not path.exists() and path.suffix == "" and (PRETRAINED_DIR / f"{path}.pt").exists():
        return PRETRAINED_DIR / f"{path}.pt"
    if not path.exists():
        bundled = ", ".join(bundled_models()) or "none"
        raise WaveUNetError(f"{path}: no such checkpoint file (bundled models: {bundled})")
    if path.is_dir():
        raise WaveUNetError(f"{path}: is a directory, not a checkpoint file")
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(obj, temporary)
    except OSError as error:
        raise WaveUNetError(f"{path}: cannot write checkpoint ({error.strerror or error})") from None


def checkpoint_dict(model: nn.Module, *, step: int | None = None, metadata: dict | None = None,
                    training: dict | None = None) -> dict:
    """The dict :func:`save_model` writes (exposed so the trainer can add its state)."""
    config = model.config
    meta = {"version": __version__, "step": step, "name": config.name}
    if isinstance(config, WaveUNetConfig):
        meta.update(sample_rate=config.sample_rate, sources=list(config.sources), channels=config.channels)
    meta.update(metadata or {})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config_to_dict(config),
            "state_dict": state, "metadata": meta}
    if training is not None:
        ckpt["training"] = training
    return ckpt


def save_model(model: nn.Module, path: str | os.PathLike, *, step: int | None = None,
               metadata: dict | None = None, training: dict | None = None) -> Path:
    """Save ``model`` (config, weights, metadata) to ``path`` atomically; returns the path."""
    atomic_torch_save(checkpoint_dict(model, step=step, metadata=metadata, training=training), path)
    return Path(path)


def read_checkpoint(path_or_name: str | os.PathLike, *, full: bool = False) -> dict:
    """Read and check one of our checkpoint files; :class:`WaveUNetError` if it is not one.

    ``full=True`` also loads the training state (optimiser, RNG), which may hold non-tensor
    Python objects and is therefore not restricted to ``weights_only``.
    """
    path = resolve_checkpoint(path_or_name)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not full)
    except pickle.UnpicklingError as error:  # a torch file holding objects we do not load
        reason = str(error).strip().splitlines()[0][:120]
        raise WaveUNetError(f"{path}: not a readable checkpoint ({reason})") from None
    except Exception:  # torch raises KeyError, IndexError, EOFError, RuntimeError... for non-torch files
        raise WaveUNetError(f"{path}: not a readable checkpoint (not a PyTorch file, or truncated)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and "model_state_dict" in ckpt:
            hint = "; it looks like a PyTorch Wave-U-Net checkpoint: convert it with `waveunet import-checkpoint`"
        raise WaveUNetError(f"{path}: not a waveunet checkpoint{hint}")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise WaveUNetError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this waveunet "
                            f"understands ({FORMAT_VERSION}); upgrade waveunet")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise WaveUNetError(f"{path}: checkpoint has no {key}")
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model of a checkpoint dict read by :func:`read_checkpoint`."""
    path = ckpt.get("path", "checkpoint")
    config = config_from_dict(ckpt["config"], source=path)
    model = model_from_config(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise WaveUNetError(f"{path}: weights do not fit the checkpoint's config ({first} {detail[:160]})") from None
    model.metadata = dict(ckpt.get("metadata", {}))
    model.eval()
    return model


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model from one of our checkpoints or a bundled name (``"demo"``), in eval mode.

    The model carries ``model.metadata`` (sample rate, sources, version, training step, ...).
    """
    return model_from_checkpoint(read_checkpoint(path_or_name)).to(device)
