"""ResNet encoders (He et al., CVPR 2016) for U-Nets, assembled from torchvision's residual blocks.

Two variants, both with torchvision's module names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``,
each block's ``conv1``/``bn1``/... and ``downsample``), so that torchvision's ImageNet state dicts
load into them key for key:

- torchvision's ResNet: a 7x7 stem (64 channels, stride 2), 3x3 max-pooling (stride 2), four stages
  of stride 1, 2, 2, 2: output stride 32;
- the PyTorch-Encoding ResNet of yassouali/pytorch-segmentation (``docs/specs/unet-resnet.md``):
  a deep stem of three 3x3 convolutions (64, 64, 128 channels; ``conv1`` is then a Sequential
  ``0 conv, 1 BN, 2 ReLU, 3 conv, 4 BN, 5 ReLU, 6 conv``) and stages 3 and 4 dilated by 2 and 4
  instead of strided: output stride 8. The first block of a dilated stage uses the previous
  dilation (1 in stage 3, 2 in stage 4), as torchvision's ``replace_stride_with_dilation`` and
  PyTorch-Encoding both do.

``forward(x)``: ``[batch, in_channels, H, W]`` -> ``[x1, x2, x3, x4]``, the four stages' outputs
(``widths`` channels; ``x1`` at a quarter of the input's resolution).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from .config import UNetResnetConfig


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal (fan-out) convolutions, BatchNorm 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def deep_stem(in_channels: int) -> nn.Sequential:
    """The PyTorch-Encoding stem: 3x3 convs in -> 64 (stride 2) -> 64 -> 128, BN and ReLU between, no biases."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 128, 3, padding=1, bias=False))


class ResNetEncoder(nn.Module):
    """The feature stages of a ResNet (no pooling head, no classifier); see the module docstring."""

    def __init__(self, config: UNetResnetConfig):
        # imported here: torchvision takes a second to import, which commands without images should not pay
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        super().__init__()
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[config.block]
        dilate = [False, config.dilated, config.dilated]
        net = ResNet(block, list(config.stage_blocks), replace_stride_with_dilation=dilate)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if config.deep_stem:
            self.conv1, self.bn1 = deep_stem(config.in_channels), nn.BatchNorm2d(128)
            self.layer1 = self._first_stage(block, config.stage_blocks[0])
            for fresh in (self.conv1, self.bn1, self.layer1):
                init_like_torchvision(fresh)
        elif config.in_channels != 3:
            self.conv1 = nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False)
            init_like_torchvision(self.conv1)
        self.widths = [64 * block.expansion * 2**i for i in range(4)]
        self.output_stride = config.output_stride

    @staticmethod
    def _first_stage(block: type, blocks: int) -> nn.Sequential:
        # torchvision's stage 1 starts from 64 channels; after the deep stem it starts from 128
        width = 64 * block.expansion
        downsample = nn.Sequential(nn.Conv2d(128, width, 1, bias=False), nn.BatchNorm2d(width)) if width != 128 else None
        return nn.Sequential(block(128, 64, downsample=downsample), *(block(width, 64) for _ in range(blocks - 1)))

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that sees the image (its input channels are the image's)."""
        return self.conv1[0] if isinstance(self.conv1, nn.Sequential) else self.conv1

    def stages(self) -> Iterator[nn.Module]:
        return iter((self.layer1, self.layer2, self.layer3, self.layer4))

    def receptive_steps(self) -> list[tuple[int, int, float]]:
        """(taps, spacing, stride) of every layer on the longest path from the input to ``x4``, in
        forward order (see :func:`waveunet.models.unet_resnet.receptive_field`)."""
        convs = [self.conv1] if isinstance(self.conv1, nn.Conv2d) else [m for m in self.conv1 if isinstance(m, nn.Conv2d)]
        steps = [_conv_step(c) for c in convs] + [(3, 1, 2)]  # then the 3x3 max-pooling, stride 2
        for stage in self.stages():
            for residual in stage:
                steps += [_conv_step(m) for m in (residual.conv1, residual.conv2, getattr(residual, "conv3", None)) if m]
        return steps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in self.stages():
            h = stage(h)
            features.append(h)
        return features


def _conv_step(conv: nn.Conv2d) -> tuple[int, int, float]:
    return conv.kernel_size[0], conv.dilation[0], conv.stride[0]


__all__ = ["ResNetEncoder", "deep_stem", "init_like_torchvision"]
