"""The 2D U-Net for image segmentation, assembled from the same blocks as the Wave-U-Net.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015 (arXiv:1505.04597), Figure 1: valid 3x3 convolutions, 2x2 max-pooling, 2x2
up-convolutions that halve the channels, crop-and-concatenate, a 1x1 classifier. The padded variant
(BatchNorm, same convolutions, the up-sampled map resized to the skip) keeps the image size. The
arrangement of yassouali/pytorch-segmentation's ``UNet`` (``skip_pooled``: each level below the first
convolves, pools and hands its pooled map on as the skip; the up-sampled map interpolated to the
skip) is what its checkpoints need (``waveunet image import-checkpoint``).

``forward(x)``: ``[batch, in_channels, H, W]`` -> ``[batch, classes, H', W']``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..blocks import ConvLayer, ConvStage, DownBlock, InterpolateUpsample, MaxPool, Normalize, TransposedUpsample, UNet
from ..blocks import UpBlock, collect_size_ops
from ..sizes import SizedNetwork, SizePaths
from .config import UNet2dConfig


class UNet2d(SizedNetwork, nn.Module):
    """The U-Net for ``config.classes`` classes (see :class:`UNet2dConfig`); parts ``unet`` and ``classifier``."""

    def __init__(self, config: UNet2dConfig):
        super().__init__()
        self.config = c = config
        F, L = c.widths, c.levels
        conv = dict(padding=c.padding, norm=c.norm, activation=c.activation, bias=c.bias)

        def stage_widths(n_in: int, n_out: int) -> list[int]:
            # `depth` convs to n_out channels; the padded variant's first conv outputs half of them
            first = n_out // 2 if c.half_first and c.depth > 1 else n_out
            return [n_in, first] + [n_out] * (c.depth - 1)

        def upsample(n_in: int, n_out: int) -> nn.Module:
            if c.upsample == "bilinear":
                return InterpolateUpsample(2, n_in, n_out)
            return TransposedUpsample(2, n_in, n_out, kernel=2, stride=2)  # the paper's 2x2 up-convolution

        # contracting path, level i: [B, F_{i-1}, h, w] --convs--> skip [B, F_i, h - 4, w - 4] --pool--> [B, F_i, h/2 - 2, w/2 - 2]
        stages = [ConvStage(2, stage_widths(c.in_channels if i == 0 else F[i - 1], F[i]), c.kernel, **conv) for i in range(L)]
        # bottleneck: [B, F_{L-1}, h, w] --convs--> [B, F_L, h - 4, w - 4] (the padded variant: more stages at F_L)
        widths = stage_widths(F[L - 1], F[L])
        for _ in range(c.bottleneck_stages - 1):
            widths += stage_widths(F[L], F[L])[1:]
        if c.skip_pooled:
            # level 0 convolves only; level i > 0 convolves and pools, and the pooled map is its skip;
            # the bottleneck's first stage pools too: [convs, pool, convs]
            down = [DownBlock(stages[0], nn.Identity())] + [
                DownBlock(stage, MaxPool(2, 2, c.pool_ceil), pooled_skip=True) for stage in stages[1:]]
            first = len(stage_widths(F[L - 1], F[L]))
            parts = [("stage", ConvStage(2, widths[:first], c.kernel, **conv)), ("resample", MaxPool(2, 2, c.pool_ceil))]
            if len(widths) > first:
                parts.append(("post_stage", ConvStage(2, widths[first - 1:], c.kernel, **conv)))
            bottleneck = nn.Sequential(OrderedDict(parts))
        else:
            down = [DownBlock(stage=stage, resample=MaxPool(2, 2, c.pool_ceil)) for stage in stages]
            bottleneck = ConvStage(2, widths, c.kernel, **conv)
        # expanding path: [B, F_{level+1}, h, w] --up-conv--> [B, F_level, 2h, 2w] --concat skip--> [B, 2 F_level, 2h, 2w]
        #   --convs--> [B, F_level, 2h - 4, 2w - 4]
        up = [UpBlock(resample=upsample(F[level + 1], F[level]),
                      stage=ConvStage(2, stage_widths(2 * F[level], F[level]), c.kernel, **conv), merge=c.merge)
              for level in reversed(range(L))]
        self.normalize = Normalize(c.input_mean, c.input_std) if c.input_mean is not None else None
        self.unet = UNet(down, bottleneck, up)
        self.classifier = ConvLayer(2, F[0], c.classes, 1, activation="linear")  # [B, F_0, h, w] -> [B, classes, h, w]
        self.training_sizes = self.sizes(c.output_size)

    @property
    def keeps_size(self) -> bool:
        """Padded networks that resize up-sampled maps to the skip output any input size unchanged."""
        return self.config.padding == "same" and self.config.merge in ("pad", "interpolate")

    def size_paths(self) -> SizePaths:
        """Size ops per image side of the contracting path, the bottleneck and the expanding path plus classifier."""
        if self.keeps_size:
            return SizePaths([], [], [])  # resizing to the skip undoes whatever the pooling rounded
        down, bottleneck, up = self.unet.size_paths()
        return SizePaths(down, bottleneck, up + collect_size_ops(self.classifier))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for side in x.shape[-2:]:
            self.check_input_length(side)
        if self.normalize is not None:
            x = self.normalize(x)
        return self.classifier(self.unet(x))
