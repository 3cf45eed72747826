"""Pretrained encoder weights for the U-Nets with a ResNet encoder, loaded after initialisation.

``UNetResnetConfig.encoder_weights`` names them:

- ``"imagenet"``: torchvision's ImageNet weights for the encoder's depth (its ``DEFAULT``:
  ``IMAGENET1K_V1`` for resnet18/34, ``IMAGENET1K_V2`` for resnet50/101/152), through torchvision's
  weights API: read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``), downloaded into it
  when missing. Offline, a missing file is one error that says where to put it.
- a path: a ResNet state dict saved with ``torch.save`` (torchvision's key names, ``conv1.weight``,
  ``layer1.0.conv1.weight``, ...; ``module.`` prefixes, an enclosing ``state_dict`` and our own
  checkpoints' ``encoder.`` prefix are accepted, a classifier ``fc.*`` is ignored).

Every tensor must fit, with two principled exceptions:

- the first convolution is adapted to ``in_channels``: 1 channel gets the sum of the RGB kernels;
  N channels get the RGB kernels repeated cyclically and scaled by 3/N (so that an image of equal
  channels gives the activations the RGB kernels gave to a grey image);
- weights of the standard 7x7 stem cannot fill a deep stem: loaded into a ``deep_stem`` encoder,
  the stem and the first block's 128-channel input convolutions keep their initialisation, and the
  returned :class:`EncoderInit` lists them (torchvision has no deep-stem ImageNet weights; the
  original's PyTorch-Encoding ``resnet50s`` file, given as a path, fills them).
"""

from __future__ import annotations

import http.client
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import WaveUNetError

IMAGENET = "imagenet"
#: keys whose shapes depend on the stem: a standard-stem file cannot fill them in a deep-stem encoder
_STEM_DEPENDENT = ("conv1.", "bn1.", "layer1.0.conv1.", "layer1.0.downsample.")


@dataclass(frozen=True)
class EncoderInit:
    """What :func:`load_encoder_weights` did: where the weights came from, how many tensors it
    loaded, and which encoder tensors kept their initialisation (a deep stem under 7x7-stem weights)."""

    source: str
    loaded: int
    kept: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        text = f"{self.source}: {self.loaded} encoder tensors loaded"
        if self.kept:
            text += (f"; {len(self.kept)} kept their random initialisation, as a 7x7-stem file has nothing for the "
                     f"deep stem ({', '.join(self.kept[:3])}{', ...' if len(self.kept) > 3 else ''})")
        return text


def imagenet_state_dict(encoder: str) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's default ImageNet state dict for ``encoder`` (``"resnet50"``), and its name.

    Read from the torch hub cache, downloaded into it when it is not there (once). Offline, a
    missing file is a :class:`WaveUNetError` naming the URL and the path to put the file at.
    """
    from torchvision.models import get_model_weights

    weights = get_model_weights(encoder).DEFAULT
    name = f"torchvision {type(weights).__name__}.{weights.name}"
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True, map_location="cpu")
    except (OSError, http.client.HTTPException) as error:  # URLError, socket timeouts, no space left ...
        reason = " ".join(str(getattr(error, "reason", None) or error).split()) or type(error).__name__
        raise WaveUNetError(f'encoder_weights = "imagenet": cannot get {name} ({reason}); without a network, '
                            f"download {weights.url} elsewhere and put it at {path}") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise WaveUNetError(f"{path}: not a readable PyTorch state dict for {name} ({type(error).__name__}); "
                            f"delete it to download it again") from None
    return state, name


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` state dict file (``weights_only``: nothing but tensors and plain data)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WaveUNetError(f"{path}: no such encoder weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for what it cannot read
        raise WaveUNetError(f"{path}: not a PyTorch state dict ({type(error).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps its weights (ours, and many trainers')
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WaveUNetError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("encoder.") for k in state):  # our UNetResnet: take its encoder
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    return state


def adapt_first_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB kernels ``[out, 3, k, k]`` for ``channels`` input channels: 1 -> their sum; N -> channel
    i takes RGB kernel i mod 3, all scaled by 3 / N."""
    if weight.shape[1] == channels:
        return weight
    if weight.shape[1] != 3:
        raise ValueError(f"can adapt RGB kernels only, not {weight.shape[1]} input channels")
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    return weight[:, [i % 3 for i in range(channels)]] * (3.0 / channels)


def _first_conv_key(state: dict) -> str | None:
    return next((k for k in ("conv1.weight", "conv1.0.weight") if k in state), None)


def fit_encoder_state(encoder: nn.Module, state: dict[str, torch.Tensor], source: str,
                      deep_stem: bool) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """(the tensors to load, the encoder keys they leave alone) for ``state`` in ``encoder``.

    :class:`WaveUNetError` naming ``source`` when ``state`` is another network's.
    """
    ours = encoder.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    first = _first_conv_key(state)
    if first is not None and first in ours and state[first].shape[1] != ours[first].shape[1]:
        state[first] = adapt_first_conv(state[first], ours[first].shape[1])
    # a 7x7-stem file in a deep-stem encoder: its stem-dependent tensors have no place here
    stem_mismatch = deep_stem and "conv1.weight" in state and state["conv1.weight"].dim() == 4

    def stem_dependent(key: str) -> bool:
        return stem_mismatch and key.startswith(_STEM_DEPENDENT)

    fitting, problems = {}, []
    for key, value in state.items():
        if key in ours and ours[key].shape == value.shape:
            fitting[key] = value.to(ours[key].dtype)
        elif not stem_dependent(key):
            problems.append(f"{key} has shape {list(value.shape)}, expected {list(ours[key].shape)}" if key in ours
                            else f"unexpected {key}")
    kept = tuple(k for k in ours if k not in fitting)
    # BatchNorm's step counters are absent from older files (torchvision's V1 ones); they steer nothing here
    problems += [f"missing {k}" for k in kept if not stem_dependent(k) and not k.endswith("num_batches_tracked")]
    if problems:
        raise WaveUNetError(f"{source}: does not fit the encoder ({problems[0]}"
                            f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''})")
    return fitting, kept


def load_encoder_weights(model: nn.Module, weights: str) -> EncoderInit:
    """Load ``"imagenet"`` or a state-dict file into ``model.encoder`` (a :class:`UNetResnet`); see
    the module docstring. Returns what was loaded."""
    config = model.config
    if weights == IMAGENET:
        state, source = imagenet_state_dict(config.encoder)
    else:
        state, source = read_state_dict(weights), str(Path(weights).expanduser())
    fitting, kept = fit_encoder_state(model.encoder, state, source, config.deep_stem)
    model.encoder.load_state_dict(fitting, strict=False)
    return EncoderInit(source, len(fitting), kept)


def warn_about(init: EncoderInit) -> None:
    """A Python warning when part of the encoder kept its initialisation."""
    if init.kept:
        warnings.warn(init.describe(), stacklevel=3)


__all__ = ["EncoderInit", "load_encoder_weights", "imagenet_state_dict", "read_state_dict", "adapt_first_conv",
           "fit_encoder_state", "IMAGENET"]
