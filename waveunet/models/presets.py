"""Named configurations: the paper's M1..M7 and M5-HighSR, the PyTorch re-implementation's
defaults, and the two 2D U-Nets.

Parameter counts and sizes (tested in ``tests/test_presets.py``), from the Wave-U-Net paper's and
the PyTorch re-implementation's specifications:

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
=================  ==========  ==============  ===============
"""

from __future__ import annotations

from dataclasses import replace

from .config import UNet2dConfig, WaveUNetConfig

_PAPER = WaveUNetConfig()  # L=12, Fc=24, kernels 15/5/1, LeakyReLU 0.2, decimation
_VOCALS = ("accompaniment", "vocals")
_MUSDB = ("bass", "drums", "other", "vocals")

PRESETS = {
    "M1": replace(_PAPER, name="M1", channels=1, sources=_VOCALS, output="direct", output_activation="tanh",
                  padding="same"),
    "M2": replace(_PAPER, name="M2", channels=1, sources=_VOCALS, padding="same"),
    "M3": replace(_PAPER, name="M3", channels=1, sources=_VOCALS),
    "M4": replace(_PAPER, name="M4", channels=2, sources=_VOCALS),
    "M5": replace(_PAPER, name="M5", channels=2, sources=_VOCALS, upsample="learned"),
    "M6": replace(_PAPER, name="M6", channels=2, sources=_MUSDB),
    "M7": replace(_PAPER, name="M7", channels=1, sources=_VOCALS, features=34, sample_rate=8192,
                  output_length=98560),
    "M5-HighSR": replace(_PAPER, name="M5-HighSR", channels=2, sources=_VOCALS, upsample="learned",
                         sample_rate=44100),
    "pytorch-default": WaveUNetConfig(
        name="pytorch-default", layout="pytorch", sources=_MUSDB, channels=2, sample_rate=44100, levels=5,
        features=32, growth="double", down_kernel=5, up_kernel=5, output_kernel=1, downsample="sinc",
        upsample="sinc", resample_factor=4, norm="group", activation="relu", output="direct",
        output_activation="linear", separate=True, output_length=88200),
    "unet2d-ronneberger": UNet2dConfig(name="unet2d-ronneberger"),
    "unet2d-padded": UNet2dConfig(name="unet2d-padded", in_channels=3, padding="same", norm="batch", bias=False,
                                  half_first=True, bottleneck_stages=2, pool_ceil=True, merge="pad",
                                  output_size=512),
}
