"""The U-Net with a ResNet encoder: yassouali/pytorch-segmentation's ``UNetResnet``, from our blocks.

``docs/specs/unet-resnet.md`` describes the original. The encoder (:mod:`.resnet`) returns its four
stages ``x1 .. x4`` (``C1 .. C4`` channels: 256 .. 2048 for bottleneck ResNets, 64 .. 512 for basic
ones); the decoder is an :class:`~waveunet.blocks.ExpandingPath` of the original's layers, in its
order (3x3 convolutions padded by 1; 4x4 transposed convolutions, stride 2, padding 1, no bias)::

    ours                        original   channels
    decoder.bottleneck.0        conv1      C4 -> 192
    decoder.up.0.resample       upconv1    192 -> 128, then resized to x3 and merged: [h, x3]
    decoder.up.0.stage.0        conv2      128 + C3 -> 128
    decoder.up.1.resample       upconv2    128 -> 96, resized to x2, [h, x2]
    decoder.up.1.stage.0        conv3      96 + C2 -> 96
    decoder.up.2.resample       upconv3    96 -> 64, resized to x1, [h, x1]
    decoder.up.2.stage.0        conv4      64 + C1 -> 64
    head.0, head.1, head.2      upconv4, conv5, upconv5: 64 -> 48 -> 48 -> 32, then resized to the input
    classifier.0, classifier.1  conv6 (3x3), conv7 (1x1, no bias): 32 -> 32 -> classes

Resizing is bilinear with aligned corners (:func:`~waveunet.blocks.interpolate_to`), so the output
has the input's height and width for any input size. As written, the decoder has no normalisation
and no non-linearity (``decoder_norm`` and ``decoder_activation`` can add them). The decoder's
input widths come from the encoder, so the shallower ResNets work as well. Fixed against the
original: ``in_channels != 3`` changes only the first convolution (the deep stem included), and
pretrained encoder weights are loaded after initialisation, never re-initialised
(:mod:`.pretrained`).

``forward(x)``: ``[batch, in_channels, H, W]`` -> ``[batch, classes, H, W]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..blocks import ConvLayer, ConvStage, ExpandingPath, InterpolateConcat, Normalize, TransposedUpsample, UpBlock
from ..blocks import interpolate_to
from ..sizes import SizedNetwork, SizePaths
from .config import UNetResnetConfig
from .resnet import ResNetEncoder

#: the decoder's widths after conv1, upconv1 .. upconv3 (original: 192, 128, 96, 64), then the head's
DECODER_WIDTHS = (192, 128, 96, 64)
HEAD_WIDTHS = (48, 32)


def receptive_field(steps: Sequence[tuple[int, float, float]]) -> int:
    """Input pixels per axis that one output pixel can depend on, along a path of layers.

    Each step is ``(taps, spacing, stride)``: an output of the layer depends on ``taps`` of its
    inputs ``spacing`` input pixels apart (a convolution's kernel and dilation), and the layer's
    output grid is ``stride`` times coarser than its input's (2 for a strided convolution, 1/2 for
    an up-sampling). ``1 + sum((taps - 1) * spacing * jump)``, ``jump`` being the input pixels
    between neighbours of the layer's input grid.

    >>> receptive_field([(3, 1, 1), (3, 1, 1)])   # two 3x3 convolutions
    5
    >>> receptive_field([(3, 1, 2), (3, 1, 1)])   # the second after a stride of 2
    7
    """
    field, jump = 1.0, 1.0
    for taps, spacing, stride in steps:
        field += (taps - 1) * spacing * jump
        jump *= stride
    return round(field)


def _resize_step(jump: float, target: float) -> list[tuple[int, float, float]]:
    """A bilinear resize from a grid of ``jump`` input pixels to one of ``target``: two taps, if any."""
    return [] if jump == target else [(2, 1, target / jump)]


class UNetResnet(SizedNetwork, nn.Module):
    """The U-Net with a ResNet encoder for ``config.classes`` classes (see :class:`UNetResnetConfig`).

    Parts: ``normalize`` (when the config standardises inputs; no weights), ``encoder``
    (:class:`~waveunet.models.resnet.ResNetEncoder`, torchvision's key names), ``decoder``,
    ``head`` and ``classifier``.
    """

    def __init__(self, config: UNetResnetConfig):
        super().__init__()
        self.config = c = config
        self.normalize = Normalize(c.input_mean, c.input_std) if c.input_mean is not None else None
        self.encoder = ResNetEncoder(c)
        c1, c2, c3, c4 = self.encoder.widths
        d0, d1, d2, d3 = DECODER_WIDTHS
        h1, h2 = HEAD_WIDTHS
        layer = dict(padding="same", norm=c.decoder_norm, activation=c.decoder_activation, bias=c.decoder_norm == "none")

        def conv(n_in: int, n_out: int) -> ConvStage:
            return ConvStage(2, [n_in, n_out], 3, **layer)

        def upconv(n_in: int, n_out: int) -> TransposedUpsample:
            return TransposedUpsample(2, n_in, n_out, kernel=4, stride=2, padding=1, bias=False,
                                      norm=c.decoder_norm, activation=c.decoder_activation)

        def merge() -> InterpolateConcat:
            return InterpolateConcat(skip_first=False)  # the original concatenates [up-sampled, skip]

        # [B, C4, h4, w4] --conv1--> [B, 192, h4, w4]; then, per up block: --upconv--> 2x the size, resized to the
        # skip's, [h, skip] concatenated --conv--> [B, 128 | 96 | 64, size of x3 | x2 | x1]
        self.decoder = ExpandingPath(
            bottleneck=conv(c4, d0),
            up=[UpBlock(upconv(d0, d1), conv(d1 + c3, d1), merge()),
                UpBlock(upconv(d1, d2), conv(d2 + c2, d2), merge()),
                UpBlock(upconv(d2, d3), conv(d3 + c1, d3), merge())])
        # [B, 64, H/4, W/4] --upconv4, conv5, upconv5--> [B, 32, H, W] (for H, W divisible by 4)
        self.head = nn.Sequential(upconv(d3, h1), ConvLayer(2, h1, h1, 3, **layer), upconv(h1, h2))
        # resized to the input's H x W, then [B, 32, H, W] --conv6--> [B, 32, H, W] --conv7--> [B, classes, H, W]
        self.classifier = nn.Sequential(ConvLayer(2, h2, h2, 3, **layer),
                                        ConvLayer(2, h2, c.classes, 1, activation="linear", bias=False))
        self.training_sizes = self.sizes(c.output_size)

    @property
    def keeps_size(self) -> bool:
        """Always: every merge and the output are resized to the map they meet."""
        return True

    def size_paths(self) -> SizePaths:
        """No size constraints: any input size, and the output has it too."""
        return SizePaths([], [], [])

    @property
    def output_stride(self) -> int:
        """The encoder's down-sampling factor (8 dilated, 32 otherwise): inputs that are multiples of
        it need no resizing inside the network."""
        return self.encoder.output_stride

    @property
    def tile_margin(self) -> int:
        """Pixels of context each side of a tile's kept output in overlap-tile segmentation
        (:func:`waveunet.image.segment.image_tiling`): two multiples of the output stride, and at least 64."""
        return max(64, 2 * self.output_stride)

    @property
    def receptive_field(self) -> int:
        """Input pixels per axis on which one output pixel can depend (along the path through ``x4``)."""
        steps = self.encoder.receptive_steps()
        jumps, jump = [], 4.0  # x1 lies on a grid of 4 input pixels (stem stride 2, max-pooling stride 2)
        for stage in self.encoder.stages():
            jump *= stage[0].stride  # torchvision's blocks keep their stride
            jumps.append(jump)
        jump = jumps[-1]
        steps.append((3, 1, 1))  # conv1
        for skip_jump in reversed(jumps[:-1]):
            steps += [(2, 1, 0.5)] + _resize_step(jump / 2, skip_jump) + [(3, 1, 1)]  # upconv, resize, conv
            jump = skip_jump
        steps += [(2, 1, 0.5), (3, 1, 1), (2, 1, 0.5)] + _resize_step(jump / 4, 1.0) + [(3, 1, 1)]  # head, resize, conv6
        return receptive_field(steps)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's parameters (the original's ``get_backbone_params``)."""
        return self.encoder.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Everything else: decoder, head and classifier (the original's ``get_decoder_params``)."""
        for part in (self.decoder, self.head, self.classifier):
            yield from part.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images [batch, channels, H, W], got shape {tuple(x.shape)}")
        size = x.shape[-2:]
        if self.normalize is not None:
            x = self.normalize(x)
        h = self.head(self.decoder(self.encoder(x)))
        return self.classifier(interpolate_to(h, size))


__all__ = ["UNetResnet", "receptive_field"]
