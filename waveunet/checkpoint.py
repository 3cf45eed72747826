"""Checkpoints: config + weights + metadata in one file, so the file alone rebuilds its model.

Layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "waveunet", "format_version": 2,
     "config": {"kind": "wave-u-net", ...},          # waveunet.models.config.config_to_dict
     "state_dict": {...},
     "metadata": {"sample_rate", "sources", "channels", "version", "step", ...},
     "training": {...}}                              # optional: optimiser/scheduler/RNG state

Format 2 names every part of the networks (``unet.down.3.stage.0.conv.weight``); format 1 (waveunet
0.1.0) had positional keys (``unet.down.3.stage.0.0.weight``). Format-1 files are read by renaming
their keys (:func:`upgrade_v1_state_dict`): the parameters are the same, in the same order, so
the model computes exactly what it computed, and a format-1 run resumes with its optimiser state.

Writes are atomic (temporary file in the same folder, then ``os.replace``), so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
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
FORMAT_VERSION = 2


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


def read_checkpoint(path: str | os.PathLike, *, full: bool = False) -> dict:
    """Read and check one of our checkpoint files; :class:`WaveUNetError` if it is not one.

    A format-1 file comes back as format 2 (its keys renamed). ``full=True`` also loads the
    training state (optimiser, RNG), which may hold non-tensor Python objects and is therefore not
    restricted to ``weights_only``. (Names such as ``demo`` are resolved by :mod:`waveunet.resolve`.)
    """
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: {'is a folder, not a' if path.is_dir() else 'no such'} checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not full)
    except Exception as error:  # torch raises many types for what it cannot read; none of them helps the user
        with open(path, "rb") as file:
            torch_file = file.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
        if not torch_file:
            reason = ""
        elif isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):
            reason = " (a PyTorch file holding Python objects other than tensors and plain data)"
        else:
            reason = " (a truncated or damaged PyTorch file)"
        raise WaveUNetError(f"{path}: not a waveunet or PyTorch checkpoint{reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and "model_state_dict" in ckpt:
            hint = "; it looks like a PyTorch Wave-U-Net checkpoint: convert it with `waveunet import-checkpoint`"
        raise WaveUNetError(f"{path}: not a waveunet checkpoint{hint}")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WaveUNetError(f"{path}: checkpoint format {version} is newer than this waveunet "
                            f"understands ({FORMAT_VERSION}); upgrade waveunet")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise WaveUNetError(f"{path}: checkpoint has no {key}")
    if version < 2:
        config = config_from_dict(ckpt["config"], source=str(path))
        ckpt["state_dict"] = upgrade_v1_state_dict(ckpt["state_dict"], config)
        ckpt["format_version"] = FORMAT_VERSION
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model of a checkpoint dict read by :func:`read_checkpoint`, in eval mode.

    The model carries ``model.metadata`` (sample rate, sources, version, training step, ...).
    """
    path = ckpt.get("path", "checkpoint")
    config = config_from_dict(ckpt["config"], source=path)
    try:
        model = model_from_config(config)
    except ValueError as error:
        raise WaveUNetError(f"{path}: {error}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise WaveUNetError(f"{path}: weights do not fit the checkpoint's config ({first} {detail[:160]})") from None
    model.metadata = dict(ckpt.get("metadata", {}))
    model.eval()
    return model


# --- format 1 -------------------------------------------------------------------------------------

_LAYER = {"0": "conv", "1": "norm"}  # format 1's conv layers: Sequential(conv, norm, activation)


def _rules_v1(config) -> list[tuple[str, Any]]:
    """Format-1 -> format-2 renames of key prefixes for ``config``'s network, first match wins."""
    down, up = r"unet\.down\.(\d+)", r"unet\.up\.(\d+)"
    if not isinstance(config, WaveUNetConfig):  # the 2D U-Net
        stages = config.bottleneck_stages > 1  # a Sequential of stages, flattened into one stage now
        return [
            (rf"{down}\.stage\.(\d+)\.([01])\.", lambda m: f"unet.down.{m[1]}.stage.{m[2]}.{_LAYER[m[3]]}."),
            (r"unet\.bottleneck\.(\d+)\.(\d+)\.([01])\." if stages else r"unet\.bottleneck\.(\d+)\.([01])\.",
             (lambda m: f"unet.bottleneck.{int(m[1]) * config.depth + int(m[2])}.{_LAYER[m[3]]}.") if stages
             else (lambda m: f"unet.bottleneck.{m[1]}.{_LAYER[m[2]]}.")),
            (rf"{up}\.upsample\.conv\.", lambda m: f"unet.up.{m[1]}.resample.conv."),
            (rf"{up}\.stage\.(\d+)\.([01])\.", lambda m: f"unet.up.{m[1]}.stage.{m[2]}.{_LAYER[m[3]]}."),
            (r"classifier\.", lambda m: "classifier.conv."),
        ]
    net = r"(nets\.[^.]+)\."
    common = [
        (rf"{net}{down}\.stage\.(\d+)\.([01])\.", lambda m: f"{m[1]}.unet.down.{m[2]}.stage.{m[3]}.{_LAYER[m[4]]}."),
        (rf"{net}unet\.bottleneck\.(\d+)\.([01])\.", lambda m: f"{m[1]}.unet.bottleneck.{m[2]}.{_LAYER[m[3]]}."),
        (rf"{net}{up}\.stage\.(\d+)\.([01])\.", lambda m: f"{m[1]}.unet.up.{m[2]}.stage.{m[3]}.{_LAYER[m[4]]}."),
        (rf"{net}output_conv\.", lambda m: f"{m[1]}.output.conv."),
    ]
    if config.layout == "pytorch":  # down: (stage, Sequential(post stage, resample)); up: (Sequential(resample, pre stage), stage)
        return common + [
            (rf"{net}{down}\.downsample\.0\.(\d+)\.([01])\.", lambda m: f"{m[1]}.unet.down.{m[2]}.post_stage.{m[3]}.{_LAYER[m[4]]}."),
            (rf"{net}{down}\.downsample\.1\.([01])\.", lambda m: f"{m[1]}.unet.down.{m[2]}.resample.{_LAYER[m[3]]}."),
            (rf"{net}{down}\.downsample\.1\.filter$", lambda m: f"{m[1]}.unet.down.{m[2]}.resample.filter"),
            (rf"{net}{up}\.upsample\.0\.0\.conv\.", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.conv."),
            (rf"{net}{up}\.upsample\.0\.1\.", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.norm."),
            (rf"{net}{up}\.upsample\.0\.filter$", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.filter"),
            (rf"{net}{up}\.upsample\.1\.(\d+)\.([01])\.", lambda m: f"{m[1]}.unet.up.{m[2]}.pre_stage.{m[3]}.{_LAYER[m[4]]}."),
        ]
    return common + [  # down: (stage, resample); up: (resample, stage)
        (rf"{net}{down}\.downsample\.([01])\.", lambda m: f"{m[1]}.unet.down.{m[2]}.resample.{_LAYER[m[3]]}."),
        (rf"{net}{down}\.downsample\.filter$", lambda m: f"{m[1]}.unet.down.{m[2]}.resample.filter"),
        (rf"{net}{up}\.upsample\.0\.conv\.", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.conv."),
        (rf"{net}{up}\.upsample\.1\.", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.norm."),
        (rf"{net}{up}\.upsample\.(weight|filter)$", lambda m: f"{m[1]}.unet.up.{m[2]}.resample.{m[3]}"),
    ]


def upgrade_v1_state_dict(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """A format-1 state dict under format-2 keys, in the same order; keys no rule knows are kept
    as they are (loading then names them as unexpected)."""
    rules = [(re.compile(pattern), replace) for pattern, replace in _rules_v1(config)]
    upgraded = {}
    for key, value in state.items():
        for pattern, replace in rules:
            match = pattern.match(key)
            if match:
                key = replace(match) + key[match.end():]
                break
        upgraded[key] = value
    return upgraded
