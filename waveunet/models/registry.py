"""Models from configs: a preset name or a config (with fields overridden) -> a freshly initialised network."""

from __future__ import annotations

import dataclasses

from torch import nn

from ..errors import WaveUNetError
from .config import UNet2dConfig, WaveUNetConfig
from .presets import PRESETS
from .unet2d import UNet2d
from .wave_u_net import WaveUNet


def list_presets() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return list(PRESETS)


def preset(name: str) -> WaveUNetConfig | UNet2dConfig:
    """The config of the preset called ``name``; :class:`WaveUNetError` naming the presets if there is none."""
    if name not in PRESETS:
        raise WaveUNetError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def with_overrides(config: WaveUNetConfig | UNet2dConfig, **overrides) -> WaveUNetConfig | UNet2dConfig:
    """``config`` with the fields in ``overrides`` replaced (checked: unknown fields and bad values raise)."""
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise WaveUNetError(f"unknown {type(config).__name__} field(s): {', '.join(unknown)}")
    try:
        return dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as error:
        raise WaveUNetError(str(error)) from None


def model_from_config(config: WaveUNetConfig | UNet2dConfig) -> nn.Module:
    """A freshly initialised model for ``config``."""
    if isinstance(config, WaveUNetConfig):
        return WaveUNet(config)
    if isinstance(config, UNet2dConfig):
        return UNet2d(config)
    raise TypeError(f"not a model config: {type(config).__name__}")


def build_model(preset_or_config: str | WaveUNetConfig | UNet2dConfig, **overrides) -> nn.Module:
    """``build_model("M4")``, ``build_model("M4", channels=1)`` or ``build_model(WaveUNetConfig(...))``.

    The weights are freshly initialised; to load trained ones use :func:`waveunet.load_model`.
    """
    config = preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    return model_from_config(with_overrides(config, **overrides))
