"""The Wave-U-Net: end-to-end source separation on the waveform.

Stoller, Ewert & Dixon, "Wave-U-Net: A Multi-Scale Neural Network for End-to-End Audio Source
Separation", ISMIR 2018 (arXiv:1806.03185), Section 3 and Table 1. Built from
:mod:`waveunet.blocks` with ``dim=1``; the authors' later PyTorch re-implementation
(``layout = "pytorch"``) is in :mod:`.wave_u_net_pytorch`.

Shapes: the mixture is ``[batch, channels, input_length]``; the estimates are
``[batch, sources, channels, output_length]``, the centre ``output_length`` samples of the input.
Notation as in the paper: ``L`` levels, feature widths ``F_i`` (``F_i = F_c (i + 1)``), down
kernel ``f_d`` = 15, up kernel ``f_u`` = 5; lengths ``n`` are those of valid ("context") mode.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ConvLayer, ConvStage, DownBlock, UNet, UpBlock, center_crop, collect_size_ops, crop_and_concat
from ..blocks import make_activation
from ..sizes import SizedNetwork, SizePaths
from .config import WaveUNetConfig
from .resampling import conv_options, downsampler, upsampler
from .wave_u_net_pytorch import pytorch_unet


def paper_unet(c: WaveUNetConfig) -> UNet:
    """The paper's U-Net (Table 1): ``L`` levels of one conv each, down and up."""
    F, L, f_d, f_u, conv = c.widths, c.levels, c.down_kernel, c.up_kernel, conv_options(c)
    down = []
    for i in range(L):
        below = c.channels if i == 0 else F[i - 1]
        # DS block i: [B, F_{i-1}, n] --conv f_d--> skip [B, F_i, n - f_d + 1] --decimate--> [B, F_i, (n - f_d) / 2 + 1]
        down.append(DownBlock(stage=ConvStage(1, [below] + [F[i]] * c.depth, f_d, **conv),
                              resample=downsampler(c, F[i])))
    # bottleneck: [B, F_{L-1}, n] --conv f_d--> [B, F_L, n - f_d + 1]
    bottleneck = ConvStage(1, [F[L - 1]] + [F[L]] * c.depth, f_d, **conv)
    up = []
    for level in reversed(range(L)):
        # US block: [B, F_{level+1}, n] --interpolate--> [B, F_{level+1}, 2n - 1]
        #   --concat crop(skip_level)--> [B, F_level + F_{level+1}, 2n - 1] --conv f_u--> [B, F_level, 2n - f_u]
        up.append(UpBlock(resample=upsampler(c, F[level + 1]),
                          stage=ConvStage(1, [F[level] + F[level + 1]] + [F[level]] * c.depth, f_u, **conv)))
    return UNet(down, bottleneck, up)


#: layout -> (U-Net builder, whether the cropped mixture joins the last feature map before the output conv)
LAYOUTS = {"paper": (paper_unet, True), "pytorch": (pytorch_unet, False)}


class SourceNet(nn.Module):
    """One U-Net (``unet``) and its ``output`` convolution, predicting ``outputs`` sources.

    ``[batch, channels, n] -> [batch, outputs * channels, n']``. In the paper's layout the cropped
    mixture is concatenated to the last feature map before the output convolution (Section 3.1).
    """

    def __init__(self, c: WaveUNetConfig, outputs: int):
        super().__init__()
        build_unet, self.with_mixture = LAYOUTS[c.layout]
        self.unet = build_unet(c)
        head = c.widths[0] + (c.channels if self.with_mixture else 0)
        self.output = ConvLayer(1, head, outputs * c.channels, c.output_kernel, padding=c.padding, activation="linear")

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        h = self.unet(mix)  # [B, F_0, n']
        if self.with_mixture:
            h = crop_and_concat(mix, h)  # [B, channels + F_0, n']
        return self.output(h)  # [B, outputs * channels, n']


class WaveUNet(SizedNetwork, nn.Module):
    """The Wave-U-Net for ``K = len(config.sources)`` sources.

    Args:
        config: a :class:`WaveUNetConfig` (see :mod:`waveunet.models.presets` for M1..M7).

    ``forward(mix)``: ``[batch, channels, input_length]`` -> ``[batch, K, channels, output_length]``.
    The input length must be valid (:meth:`output_length_for` says which are); the output is the
    centre of the input (valid padding) or as long as the input (same padding). With a
    ``difference`` output the last source is ``crop(mix) - sum(others)`` exactly (in training
    mode; at inference linear outputs are then clipped to [-1, 1]).

    Submodules: ``nets`` holds one :class:`SourceNet` per estimated source (``separate``) or one
    for all of them (``nets.all``).
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

    def size_paths(self) -> SizePaths:
        """Size ops of the contracting path, the bottleneck and the expanding path plus the output conv."""
        first = next(iter(self.nets.values()))  # every source net has the same sizes
        down, bottleneck, up = first.unet.size_paths()
        return SizePaths(down, bottleneck, up + collect_size_ops(first.output))

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        out_length = self.check_input_length(mix.shape[-1])
        batch, channels = mix.shape[0], self.config.channels
        estimates = torch.cat([net(mix) for net in self.nets.values()], dim=1)  # [B, K' * C, n']
        estimates = self.output_activation(estimates.view(batch, -1, channels, out_length))  # [B, K', C, n']
        if self.config.output == "difference":
            rest = center_crop(mix, [out_length]) - estimates.sum(dim=1)  # the last source: what the others leave
            estimates = torch.cat([estimates, rest.unsqueeze(1)], dim=1)  # [B, K, C, n']
        if not self.training and self.config.output_activation == "linear":
            estimates = estimates.clamp(-1.0, 1.0)
        return estimates
