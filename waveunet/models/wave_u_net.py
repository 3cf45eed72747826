"""The Wave-U-Net: end-to-end source separation on the waveform.

Stoller, Ewert & Dixon, "Wave-U-Net: A Multi-Scale Neural Network for End-to-End Audio Source
Separation", ISMIR 2018 (arXiv:1806.03185), and the authors' later PyTorch re-implementation
(``layout="pytorch"``). Built from :mod:`waveunet.blocks` with ``dim=1``.

Shapes: the mixture is ``[batch, channels, input_length]``; the estimates are
``[batch, sources, channels, output_length]``, the centre ``output_length`` samples of the input.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import sizes
from ..blocks import (ConvLayer, ConvStage, Decimate, DownBlock, LearnedUpsample, LinearUpsample,
                      SincResample, TransposedUpsample, UNet, UpBlock, center_crop, crop_and_concat,
                      make_activation, make_norm)
from .config import WaveUNetConfig
from .sizing import SizedNetwork


def _layer_options(c: WaveUNetConfig) -> dict:
    return dict(padding=c.padding, norm=c.norm, activation=c.activation, negative_slope=c.negative_slope,
                norm_momentum=c.norm_momentum)


def _downsample(c: WaveUNetConfig, channels: int) -> nn.Module:
    if c.downsample == "decimate":
        return Decimate(1, c.resample_factor, c.padding)
    if c.downsample == "sinc":
        return SincResample(channels, c.resample_factor)
    return ConvLayer(1, channels, channels, c.down_kernel, stride=c.resample_factor, **_layer_options(c))


def _upsample(c: WaveUNetConfig, channels: int) -> nn.Module:
    if c.upsample == "linear":
        return LinearUpsample(c.padding)
    if c.upsample == "learned":
        return LearnedUpsample(channels, c.padding)
    if c.upsample == "sinc":
        return SincResample(channels, c.resample_factor, up=True)
    # Valid mode follows the PyTorch Wave-U-Net's learned resampling (padding kernel-1); same mode
    # uses a kernel equal to the stride, which maps n -> factor * n.
    kernel, padding = (c.up_kernel, c.up_kernel - 1) if c.padding == "valid" else (c.resample_factor, 0)
    return nn.Sequential(TransposedUpsample(1, channels, channels, kernel, c.resample_factor, padding),
                         make_norm(c.norm, 1, channels, c.norm_momentum),
                         make_activation(c.activation, c.negative_slope))


def paper_unet(c: WaveUNetConfig) -> UNet:
    """The paper's U-Net: level i convolves to ``F_i`` (kernel 15), keeps the skip, decimates;
    the expanding path up-samples, concatenates ``[crop(skip), h]`` and convolves (kernel 5)."""
    w, L, opts = c.widths, c.levels, _layer_options(c)
    down = [DownBlock(ConvStage(1, c.channels if i == 0 else w[i - 1], w[i], c.down_kernel, depth=c.depth, **opts),
                      _downsample(c, w[i])) for i in range(L)]
    bottleneck = ConvStage(1, w[L - 1], w[L], c.down_kernel, depth=c.depth, **opts)
    up = [UpBlock(_upsample(c, w[L - i]),
                  ConvStage(1, w[L - i] + w[L - 1 - i], w[L - 1 - i], c.up_kernel, depth=c.depth, **opts))
          for i in range(L)]
    return UNet(down, bottleneck, up)


def pytorch_unet(c: WaveUNetConfig) -> UNet:
    """The PyTorch re-implementation's U-Net: each level convolves to ``F_i``, keeps the skip,
    convolves to ``F_{i+1}`` and resamples; each up level resamples, convolves, concatenates
    ``[crop(skip), crop(h)]`` and convolves again (all kernels ``down_kernel``)."""
    w, L, k, opts = c.widths, c.levels, c.down_kernel, _layer_options(c)
    down = [DownBlock(ConvStage(1, c.channels if i == 0 else w[i], w[i], k, **opts),
                      nn.Sequential(ConvStage(1, w[i], w[i + 1], k, **opts), _downsample(c, w[i + 1])))
            for i in range(L)]
    bottleneck = nn.Sequential(*(ConvLayer(1, w[L], w[L], k, **opts) for _ in range(c.depth)))
    up = [UpBlock(nn.Sequential(_upsample(c, w[L - i]), ConvStage(1, w[L - i], w[L - 1 - i], k, **opts)),
                  ConvStage(1, 2 * w[L - 1 - i], w[L - 1 - i], k, **opts))
          for i in range(L)]
    return UNet(down, bottleneck, up)


class SourceNet(nn.Module):
    """One U-Net and its output convolution, predicting ``outputs`` sources.

    ``[batch, channels, T] -> [batch, outputs * channels, T']``. In the paper's layout the cropped
    mixture is concatenated to the last feature map before the output convolution.
    """

    def __init__(self, c: WaveUNetConfig, outputs: int):
        super().__init__()
        self.unet = paper_unet(c) if c.layout == "paper" else pytorch_unet(c)
        self.with_mixture = c.layout == "paper"
        head_in = c.widths[0] + (c.channels if self.with_mixture else 0)
        pad = (c.output_kernel - 1) // 2 if c.padding == "same" else 0
        self.output_conv = nn.Conv1d(head_in, outputs * c.channels, c.output_kernel, padding=pad)
        self.output_conv.size_ops = [sizes.Conv(c.output_kernel, 1, c.padding)]

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        h = self.unet(mix)
        if self.with_mixture:
            h = crop_and_concat(mix, h)
        return self.output_conv(h)


class WaveUNet(SizedNetwork, nn.Module):
    """The Wave-U-Net for ``K = len(config.sources)`` sources.

    Args:
        config: a :class:`WaveUNetConfig` (see :mod:`waveunet.models.presets` for M1..M7).

    ``forward(mix)``: ``[batch, channels, input_length]`` -> ``[batch, K, channels, output_length]``.
    The input length must be valid (:meth:`output_length_for` says which are); the output is the
    centre of the input (valid padding) or as long as the input (same padding). With a
    ``difference`` output the last source is ``crop(mix) - sum(others)`` exactly (in training
    mode; at inference linear outputs are then clipped to [-1, 1]).
    """

    def __init__(self, config: WaveUNetConfig):
        super().__init__()
        self.config = c = config
        estimated = c.estimated_sources
        if c.separate:
            self.nets = nn.ModuleDict({name: SourceNet(c, 1) for name in estimated})
        else:
            self.nets = nn.ModuleDict({"all": SourceNet(c, len(estimated))})
        self.output_activation = make_activation(c.output_activation)
        self.training_sizes = self.sizes(c.output_length)

    def size_ops(self) -> tuple[list, list, list]:
        """(contracting, bottleneck, expanding + output conv) size ops; every source net has the same."""
        first = next(iter(self.nets.values()))
        down, bottleneck, up = first.unet.size_ops()
        return down, bottleneck, up + first.output_conv.size_ops

    @property
    def input_length(self) -> int:
        """Input length of a training example."""
        return self.training_sizes.input_length

    @property
    def output_length(self) -> int:
        """Output length of a training example."""
        return self.training_sizes.output_length

    # --- forward ---

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        out_length = self.check_input_length(mix.shape[-1])
        batch, channels = mix.shape[0], self.config.channels
        estimates = torch.cat([net(mix) for net in self.nets.values()], dim=1)
        estimates = self.output_activation(estimates.view(batch, -1, channels, out_length))
        if self.config.output == "difference":
            rest = center_crop(mix, [out_length]) - estimates.sum(dim=1)
            estimates = torch.cat([estimates, rest.unsqueeze(1)], dim=1)
        if not self.training and self.config.output_activation == "linear":
            estimates = estimates.clamp(-1.0, 1.0)
        return estimates
