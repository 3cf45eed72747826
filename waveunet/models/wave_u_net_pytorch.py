"""The U-Net of the authors' PyTorch re-implementation of the Wave-U-Net (f90/Wave-U-Net-Pytorch).

Selected by ``WaveUNetConfig(layout="pytorch")``; :class:`~waveunet.models.wave_u_net.WaveUNet`
puts its output convolution on top (no mixture concatenation). Against the paper's U-Net each level
convolves twice: once before the skip is taken and once after, and the expanding path convolves
once before the merge and once after it. All kernels are ``k = down_kernel`` (5 by default), the
resampling factor is ``s = resample_factor`` (4 by default: sinc low-pass filters, or strided and
transposed convolutions), and the widths ``F_0 .. F_L`` double by default. See
``docs/specs/wave-u-net-pytorch.md`` for the reference's layers and checkpoint layout, which
:mod:`waveunet.importer` maps onto this module's parts.
"""

from __future__ import annotations

from ..blocks import ConvStage, DownBlock, UNet, UpBlock
from .config import WaveUNetConfig
from .resampling import conv_options, downsampler, upsampler


def pytorch_unet(c: WaveUNetConfig) -> UNet:
    """The re-implementation's U-Net: ``L`` down-sampling blocks, ``depth`` bottleneck convs, ``L`` up-sampling blocks."""
    F, L, k, conv = c.widths, c.levels, c.down_kernel, conv_options(c)
    down = []
    for i in range(L):
        below = c.channels if i == 0 else F[i]
        # [B, F_i, n] --conv--> skip [B, F_i, n - k + 1] --conv--> [B, F_{i+1}, n - 2k + 2]
        #   --resample--> [B, F_{i+1}, (n - 2k + 1) / s + 1]
        down.append(DownBlock(stage=ConvStage(1, [below, F[i]], k, **conv),
                              post_stage=ConvStage(1, [F[i], F[i + 1]], k, **conv),
                              resample=downsampler(c, F[i + 1])))
    # bottleneck: [B, F_L, n] --depth convs--> [B, F_L, n - depth (k - 1)]
    bottleneck = ConvStage(1, [F[L]] * (c.depth + 1), k, **conv)
    up = []
    for level in reversed(range(L)):
        # [B, F_{level+1}, n] --resample--> [B, F_{level+1}, (n - 1) s + 1] --conv--> [B, F_level, (n - 1) s - k + 2]
        #   --concat crop(skip_level)--> [B, 2 F_level, .] --conv--> [B, F_level, (n - 1) s - 2k + 3]
        up.append(UpBlock(resample=upsampler(c, F[level + 1]),
                          pre_stage=ConvStage(1, [F[level + 1], F[level]], k, **conv),
                          stage=ConvStage(1, [2 * F[level], F[level]], k, **conv)))
    return UNet(down, bottleneck, up)
