"""The 2D U-Net for image segmentation, assembled from the same blocks as the Wave-U-Net.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015 (arXiv:1505.04597): valid 3x3 convolutions, 2x2 max-pooling, 2x2 up-convolutions
that halve the channels, crop-and-concatenate, a 1x1 classifier. The padded variant (BatchNorm,
same convolutions, the up-sampled map resized to the skip) keeps the image size.

``forward(x)``: ``[batch, in_channels, H, W]`` -> ``[batch, classes, H', W']``.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import sizes
from ..blocks import ConvStage, DownBlock, MaxPool, TransposedUpsample, UNet, UpBlock
from .config import UNet2dConfig
from .sizing import SizedNetwork


class _Bilinear(nn.Module):
    """Bilinear up-sampling by 2 followed by a 1x1 conv that halves the channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.size_ops = [sizes.Upsample(2, "same")]

    def forward(self, x):
        return self.conv(self.up(x))


class UNet2d(SizedNetwork, nn.Module):
    """The U-Net for ``config.classes`` classes (see :class:`UNet2dConfig`)."""

    def __init__(self, config: UNet2dConfig):
        super().__init__()
        self.config = c = config
        w, L = c.widths, c.levels
        opts = dict(padding=c.padding, norm=c.norm, activation=c.activation, bias=c.bias)

        def stage(n_in, n_out):
            return ConvStage(2, n_in, n_out, c.kernel, depth=c.depth, mid_channels=n_out // 2 if c.half_first else None,
                             **opts)

        def upsample(n_in, n_out):
            if c.upsample == "bilinear":
                return _Bilinear(n_in, n_out)
            return TransposedUpsample(2, n_in, n_out, 2, 2)

        down = [DownBlock(stage(c.in_channels if i == 0 else w[i - 1], w[i]), MaxPool(2, 2, c.pool_ceil))
                for i in range(L)]
        up = [UpBlock(upsample(w[L - i], w[L - 1 - i]), stage(2 * w[L - 1 - i], w[L - 1 - i]), merge=c.merge)
              for i in range(L)]
        bottleneck = stage(w[L - 1], w[L])
        if c.bottleneck_stages > 1:  # a single stage stays unwrapped: its state-dict keys do not change
            bottleneck = nn.Sequential(bottleneck, *(stage(w[L], w[L]) for _ in range(c.bottleneck_stages - 1)))
        self.unet = UNet(down, bottleneck, up)
        self.classifier = nn.Conv2d(w[0], c.classes, 1)
        self.classifier.size_ops = [sizes.Conv(1)]
        self.training_sizes = self.sizes(c.output_size)

    @property
    def keeps_size(self) -> bool:
        """Padded networks that resize up-sampled maps to the skip output any input size unchanged."""
        return self.config.padding == "same" and self.config.merge == "pad"

    def size_ops(self) -> tuple[list, list, list]:
        """(contracting, bottleneck, expanding + classifier) size ops per image side."""
        if self.keeps_size:
            return [], [], []  # resizing to the skip undoes whatever the pooling rounded
        down, bottleneck, up = self.unet.size_ops()
        return down, bottleneck, up + self.classifier.size_ops

    @property
    def input_size(self) -> int:
        """Input side of a training tile."""
        return self.training_sizes.input_length

    @property
    def output_size(self) -> int:
        """Output side of a training tile."""
        return self.training_sizes.output_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for side in x.shape[-2:]:
            self.check_input_length(side)
        return self.classifier(self.unet(x))
