"""The networks: :class:`WaveUNet` (1D), :class:`UNet2d` and :class:`UNetResnet` (2D), their configs and presets."""

from .config import UNet2dConfig, UNetResnetConfig, WaveUNetConfig, config_from_dict, config_to_dict
from .presets import DESCRIPTIONS, PRESETS
from .registry import build_model, list_presets, model_from_config, preset
from .unet2d import UNet2d
from .unet_resnet import UNetResnet
from .wave_u_net import WaveUNet

__all__ = ["WaveUNet", "UNet2d", "UNetResnet", "WaveUNetConfig", "UNet2dConfig", "UNetResnetConfig", "PRESETS", "DESCRIPTIONS", "build_model",
           "list_presets", "model_from_config", "preset", "config_from_dict", "config_to_dict"]
