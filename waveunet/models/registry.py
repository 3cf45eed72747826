"""Models from configs: a preset name or a config (with fields overridden) -> a network.

:func:`model_from_config` gives the architecture, freshly initialised, and reads no files (a
checkpoint loads its own weights on top); :func:`build_model` also loads the pretrained encoder a
config names (``UNetResnetConfig.encoder_weights``).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..errors import WaveUNetError
from .config import UNet2dConfig, UNetResnetConfig, WaveUNetConfig
from .presets import PRESETS
from .unet2d import UNet2d
from .unet_resnet import UNetResnet
from .wave_u_net import WaveUNet

Config = WaveUNetConfig | UNet2dConfig | UNetResnetConfig


def list_presets() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return list(PRESETS)


def preset(name: str) -> Config:
    """The config of the preset called ``name``; :class:`WaveUNetError` naming the presets if there is none."""
    if name not in PRESETS:
        raise WaveUNetError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def with_overrides(config: Config, **overrides) -> Config:
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


def model_from_config(config: Config) -> nn.Module:
    """A freshly initialised model for ``config`` (no file is read, pretrained encoders included)."""
    if isinstance(config, WaveUNetConfig):
        return WaveUNet(config)
    if isinstance(config, UNet2dConfig):
        return UNet2d(config)
    if isinstance(config, UNetResnetConfig):
        return UNetResnet(config)
    raise TypeError(f"not a model config: {type(config).__name__}")


def build_model(preset_or_config: str | Config, **overrides) -> nn.Module:
    """``build_model("M4")``, ``build_model("M4", channels=1)`` or ``build_model(WaveUNetConfig(...))``.

    The weights are freshly initialised, apart from a pretrained encoder the config names
    (``build_model("unet-resnet50", encoder_weights="imagenet")``, see
    :func:`waveunet.models.pretrained.load_encoder_weights`); to load trained ones use
    :func:`waveunet.load_model`.
    """
    config = preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    model = model_from_config(with_overrides(config, **overrides))
    if getattr(model.config, "encoder_weights", None):
        from .pretrained import load_encoder_weights, warn_about

        warn_about(load_encoder_weights(model, model.config.encoder_weights))
    return model
