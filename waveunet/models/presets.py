"""Named configurations: the paper's M1..M7 and M5-HighSR, the PyTorch re-implementation's
defaults, the two 2D U-Nets and the U-Nets with a ResNet encoder; one factory per preset, its
docstring saying what it is.

Parameter counts and sizes (checked by ``tests/test_models.py`` against ``docs/specs/``):

=================  ==========  ==============  ===============
preset             parameters  input           output
=================  ==========  ==============  ===============
M1                 10,263,028  16384           16384
M2                 10,263,002  16384           16384
M3                 10,263,002  147443          16389
M4                 10,263,390  147443          16389
M5                 10,265,550  147443          16389
M6                 10,263,498  147443          16389
M7                 20,594,652  233459          102405
M5-HighSR          10,265,550  147443          16389
pytorch-default    69,910,152  97961           88409
unet2d-ronneberger 31,030,658  572x572         388x388
unet2d-padded      26,355,234  any             same as input
unet-resnet50      29,999,920  any             same as input
unet-resnet101     48,992,048  any             same as input
unet-resnet152     64,635,696  any             same as input
=================  ==========  ==============  ===============

The ``unet-resnet*`` decoders on torchvision's standard ResNets (``deep_stem = false``,
``dilated = false``) have 29,876,144, 48,868,272 and 64,511,920 parameters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .config import UNet2dConfig, UNetResnetConfig, WaveUNetConfig

#: preset name -> config
PRESETS: dict[str, WaveUNetConfig | UNet2dConfig | UNetResnetConfig] = {}
#: preset name -> one line: what it is in its paper
DESCRIPTIONS: dict[str, str] = {}

_PAPER = WaveUNetConfig()  # L = 12, F_c = 24, kernels 15/5/1, LeakyReLU 0.2, decimation, 22.05 kHz
_VOCALS = ("accompaniment", "vocals")
_MUSDB = ("bass", "drums", "other", "vocals")


def _preset(name: str) -> Callable:
    def register(factory: Callable[[], WaveUNetConfig | UNet2dConfig | UNetResnetConfig]):
        PRESETS[name] = replace(factory(), name=name)
        DESCRIPTIONS[name] = " ".join(factory.__doc__.split())
        return factory
    return register


@_preset("M1")
def m1() -> WaveUNetConfig:
    """Wave-U-Net M1, the paper's baseline: mono, same-padded convolutions, a tanh output per source."""
    return replace(_PAPER, channels=1, sources=_VOCALS, output="direct", output_activation="tanh", padding="same")


@_preset("M2")
def m2() -> WaveUNetConfig:
    """Wave-U-Net M2: M1 with the difference output (vocals = mixture - accompaniment estimate)."""
    return replace(_PAPER, channels=1, sources=_VOCALS, padding="same")


@_preset("M3")
def m3() -> WaveUNetConfig:
    """Wave-U-Net M3: M2 with proper input context (valid convolutions; the output is the input's centre)."""
    return replace(_PAPER, channels=1, sources=_VOCALS)


@_preset("M4")
def m4() -> WaveUNetConfig:
    """Wave-U-Net M4: M3 in stereo, the paper's best singing-voice model."""
    return replace(_PAPER, channels=2, sources=_VOCALS)


@_preset("M5")
def m5() -> WaveUNetConfig:
    """Wave-U-Net M5: M4 with learned up-sampling (the paper's interpolation layer, one weight per channel)."""
    return replace(_PAPER, channels=2, sources=_VOCALS, upsample="learned")


@_preset("M6")
def m6() -> WaveUNetConfig:
    """Wave-U-Net M6: M4 for multi-instrument separation into bass, drums, other and vocals."""
    return replace(_PAPER, channels=2, sources=_MUSDB)


@_preset("M7")
def m7() -> WaveUNetConfig:
    """Wave-U-Net M7: mono at 8192 Hz with 34 filters per level, sized like the spectrogram U-Net it is compared with."""
    return replace(_PAPER, channels=1, sources=_VOCALS, features=34, sample_rate=8192, output_length=98560)


@_preset("M5-HighSR")
def m5_high_sr() -> WaveUNetConfig:
    """Wave-U-Net M5 at 44.1 kHz: the authors' released high-sample-rate vocal model."""
    return replace(_PAPER, channels=2, sources=_VOCALS, upsample="learned", sample_rate=44100)


@_preset("pytorch-default")
def pytorch_default() -> WaveUNetConfig:
    """The PyTorch re-implementation's defaults: one net per MUSDB18 source, 44.1 kHz, GroupNorm, sinc resampling by 4."""
    return WaveUNetConfig(
        layout="pytorch", sources=_MUSDB, channels=2, sample_rate=44100, levels=5, features=32, growth="double",
        down_kernel=5, up_kernel=5, output_kernel=1, downsample="sinc", upsample="sinc", resample_factor=4,
        norm="group", activation="relu", output="direct", output_activation="linear", separate=True,
        output_length=88200)


@_preset("unet2d-ronneberger")
def unet2d_ronneberger() -> UNet2dConfig:
    """The U-Net of Ronneberger et al. (2015): valid 3x3 convolutions, 64..1024 features, 572x572 -> 388x388 tiles."""
    return UNet2dConfig()


@_preset("unet2d-padded")
def unet2d_padded() -> UNet2dConfig:
    """The UNet of yassouali/pytorch-segmentation: same convolutions with BatchNorm, pooled skips, any image size."""
    return UNet2dConfig(in_channels=3, padding="same", norm="batch", bias=False, half_first=True, bottleneck_stages=2,
                        pool_ceil=True, merge="interpolate", skip_pooled=True, output_size=512)


# yassouali/pytorch-segmentation's UNetResnet on its own ResNets (docs/specs/unet-resnet.md)
_PYTORCH_ENCODING = dict(in_channels=3, deep_stem=True, dilated=True, output_size=512)


@_preset("unet-resnet50")
def unet_resnet50() -> UNetResnetConfig:
    """yassouali's U-Net with a ResNet-50 encoder: deep 3x3 stem, dilated stages 3-4 (output stride 8), any image size."""
    return UNetResnetConfig(encoder="resnet50", **_PYTORCH_ENCODING)


@_preset("unet-resnet101")
def unet_resnet101() -> UNetResnetConfig:
    """yassouali's U-Net with a ResNet-101 encoder: deep 3x3 stem, dilated stages 3-4 (output stride 8), any image size."""
    return UNetResnetConfig(encoder="resnet101", **_PYTORCH_ENCODING)


@_preset("unet-resnet152")
def unet_resnet152() -> UNetResnetConfig:
    """yassouali's U-Net with a ResNet-152 encoder: deep 3x3 stem, dilated stages 3-4 (output stride 8), any image size."""
    return UNetResnetConfig(encoder="resnet152", **_PYTORCH_ENCODING)
