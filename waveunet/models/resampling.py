"""The convolution options and the down- and up-sampling layers a :class:`WaveUNetConfig` names.

Both Wave-U-Net layouts (:mod:`.wave_u_net`, :mod:`.wave_u_net_pytorch`) take their layers from
here, so that ``downsample = "sinc"`` or ``norm = "group"`` means the same in both.
"""

from __future__ import annotations

from torch import nn

from ..blocks import ConvLayer, Decimate, LearnedUpsample, LinearUpsample, SincResample, TransposedUpsample
from .config import WaveUNetConfig


def conv_options(c: WaveUNetConfig) -> dict:
    """The keyword arguments of every :class:`~waveunet.blocks.ConvLayer` of the network."""
    return dict(padding=c.padding, norm=c.norm, activation=c.activation, negative_slope=c.negative_slope,
                norm_momentum=c.norm_momentum)


def downsampler(c: WaveUNetConfig, channels: int) -> nn.Module:
    """Down-sampling by ``c.resample_factor`` of ``channels`` feature channels.

    ``decimate``: keep every other sample (the paper); ``sinc``: the fixed low-pass of the PyTorch
    re-implementation; ``conv``: a strided convolution (its learned resampling).
    """
    if c.downsample == "decimate":
        return Decimate(1, c.resample_factor, c.padding)
    if c.downsample == "sinc":
        return SincResample(channels, c.resample_factor)
    return ConvLayer(1, channels, channels, c.down_kernel, stride=c.resample_factor, **conv_options(c))


def upsampler(c: WaveUNetConfig, channels: int) -> nn.Module:
    """Up-sampling by ``c.resample_factor`` of ``channels`` feature channels.

    ``linear``: the paper's interpolation; ``learned``: its M5 interpolation layer; ``sinc``: the
    fixed low-pass; ``transposed``: a transposed convolution, normalised and activated.
    """
    if c.upsample == "linear":
        return LinearUpsample(c.padding)
    if c.upsample == "learned":
        return LearnedUpsample(channels, c.padding)
    if c.upsample == "sinc":
        return SincResample(channels, c.resample_factor, up=True)
    # Valid mode follows the PyTorch Wave-U-Net's learned resampling (padding kernel - 1); same
    # mode uses a kernel equal to the stride, which maps n -> factor * n.
    kernel, padding = (c.up_kernel, c.up_kernel - 1) if c.padding == "valid" else (c.resample_factor, 0)
    return TransposedUpsample(1, channels, channels, kernel, c.resample_factor, padding, norm=c.norm,
                              activation=c.activation, negative_slope=c.negative_slope,
                              norm_momentum=c.norm_momentum)
