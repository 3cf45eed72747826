"""The networks: :class:`WaveUNet` (1D) and :class:`UNet2d` (2D), their configs and presets."""

from .config import UNet2dConfig, WaveUNetConfig, config_from_dict, config_to_dict
from .presets import DESCRIPTIONS, PRESETS
from .registry import build_model, list_presets, model_from_config, preset
from .unet2d import UNet2d
from .wave_u_net import WaveUNet

__all__ = ["WaveUNet", "UNet2d", "WaveUNetConfig", "UNet2dConfig", "PRESETS", "DESCRIPTIONS", "build_model",
           "list_presets", "model_from_config", "preset", "config_from_dict", "config_to_dict"]
