"""Typed configurations of the networks: the Wave-U-Net, the 2D U-Net and the U-Net with a ResNet encoder.

A config fully determines a model: checkpoints store it (as a plain dict) next to the weights, so
a checkpoint alone rebuilds its model. :func:`config_to_dict` and :func:`config_from_dict` are the
only (de)serialisers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import WaveUNetError

#: the allowed values of each string field, per config class
WAVE_U_NET_CHOICES = {
    "growth": ("add", "double"),
    "padding": ("valid", "same"),
    "downsample": ("decimate", "conv", "sinc"),
    "upsample": ("linear", "learned", "transposed", "sinc"),
    "norm": ("none", "batch", "group"),
    "activation": ("leaky_relu", "relu"),
    "output": ("direct", "difference"),
    "output_activation": ("tanh", "linear"),
    "layout": ("paper", "pytorch"),
}
UNET2D_CHOICES = {
    "growth": ("add", "double"),
    "padding": ("valid", "same"),
    "norm": ("none", "batch"),
    "upsample": ("transposed", "bilinear"),
    "merge": ("crop", "pad", "interpolate"),
    "activation": ("leaky_relu", "relu"),
}
#: ResNet depth -> (block, blocks per stage), as in He et al. (2016), Table 1
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
UNET_RESNET_CHOICES = {
    "encoder": tuple(RESNETS),
    "decoder_norm": ("none", "batch"),
    "decoder_activation": ("linear", "relu"),
}


def _check_choices(config, choices: dict[str, tuple[str, ...]]) -> None:
    for name, allowed in choices.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"{type(config).__name__}.{name} must be one of {', '.join(allowed)}; got {value!r}")


def _check_normalisation(config, channels: int) -> None:
    """``input_mean`` and ``input_std``: both absent, or one number per input channel (std > 0)."""
    mean, std = config.input_mean, config.input_std
    if mean is not None:
        object.__setattr__(config, "input_mean", tuple(float(v) for v in mean))
    if std is not None:
        object.__setattr__(config, "input_std", tuple(float(v) for v in std))
    if (mean is None) != (std is None):
        raise ValueError(f"{type(config).__name__}: give both input_mean and input_std, or neither")
    if mean is not None and not (len(config.input_mean) == len(config.input_std) == channels):
        raise ValueError(f"{type(config).__name__}: input_mean and input_std need one value per input channel "
                         f"({channels}), got {len(config.input_mean)} and {len(config.input_std)}")
    if std is not None and min(config.input_std) <= 0:
        raise ValueError(f"{type(config).__name__}: input_std must be positive, got {list(config.input_std)}")


def feature_widths(features: int, growth: str, count: int) -> list[int]:
    """Feature widths ``F_0 .. F_{count-1}``: ``add`` F_i = features*(i+1), ``double`` F_i = features*2**i."""
    return [features * (i + 1) if growth == "add" else features * 2**i for i in range(count)]


@dataclass(frozen=True)
class WaveUNetConfig:
    """The Wave-U-Net (Stoller, Ewert & Dixon, ISMIR 2018), and the PyTorch re-implementation's variant.

    Attributes:
        sources: source names, in output order; with ``output="difference"`` the LAST one is
            ``crop(mixture) - sum(others)``.
        channels: audio channels in and out (1 mono, 2 stereo).
        sample_rate: the rate the model works at (Hz).
        levels: number of down-sampling (and up-sampling) steps, L.
        features, growth: feature widths, see :func:`feature_widths` (paper: 24, ``add``).
        down_kernel, up_kernel, output_kernel: kernel sizes of the contracting path (and the
            bottleneck), the expanding path, and the output convolution.
        padding: ``valid`` (context: the output is the centre of the input) or ``same``.
        downsample: ``decimate`` (keep every other sample) | ``conv`` (strided conv) | ``sinc`` (fixed low-pass).
        upsample: ``linear`` | ``learned`` (the paper's M5 interpolation) | ``transposed`` | ``sinc``.
        resample_factor: down/up-sampling factor per level (paper 2, PyTorch variant 4).
        norm, norm_momentum: normalisation after each conv (``none`` | ``batch`` | ``group``).
        activation, negative_slope: non-linearity after each conv (paper: LeakyReLU 0.2).
        depth: convolutions per conv stage.
        output: ``direct`` (one estimate per source) or ``difference`` (see ``sources``).
        output_activation: ``tanh`` or ``linear``; linear estimates are clipped to [-1, 1] at
            inference only.
        separate: one independent U-Net per estimated source instead of one shared network.
        layout: ``paper`` (one conv per level; mixture concatenated before the output conv) or
            ``pytorch`` (the re-implementation's blocks: a conv before and after each skip).
        output_length: desired output length (samples) of a training example; the actual one is
            the smallest valid length at least this long.
    """

    sources: tuple[str, ...] = ("accompaniment", "vocals")
    channels: int = 2
    sample_rate: int = 22050
    levels: int = 12
    features: int = 24
    growth: str = "add"
    down_kernel: int = 15
    up_kernel: int = 5
    output_kernel: int = 1
    padding: str = "valid"
    downsample: str = "decimate"
    upsample: str = "linear"
    resample_factor: int = 2
    norm: str = "none"
    norm_momentum: float = 0.1
    activation: str = "leaky_relu"
    negative_slope: float = 0.2
    depth: int = 1
    output: str = "difference"
    output_activation: str = "linear"
    separate: bool = False
    layout: str = "paper"
    output_length: int = 16384
    name: str = "custom"

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        _check_choices(self, WAVE_U_NET_CHOICES)
        if self.padding == "same" and "sinc" in (self.downsample, self.upsample):
            raise ValueError("sinc resampling needs valid padding")
        if self.upsample in ("linear", "learned") and self.resample_factor != 2:
            raise ValueError("linear and learned interpolation up-sample by 2")
        if self.output == "difference" and len(self.sources) < 2:
            raise ValueError("a difference output needs at least two sources")
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise ValueError(f"sources must be distinct and non-empty, got {self.sources}")
        if self.channels < 1 or self.levels < 1 or self.depth < 1:
            raise ValueError("channels, levels and depth must be positive")

    @property
    def widths(self) -> list[int]:
        """Feature widths ``F_0 .. F_L`` (``F_L`` is the bottleneck's)."""
        return feature_widths(self.features, self.growth, self.levels + 1)

    @property
    def estimated_sources(self) -> tuple[str, ...]:
        """Sources a network predicts (all but the last with a difference output)."""
        return self.sources[:-1] if self.output == "difference" else self.sources


@dataclass(frozen=True)
class UNet2dConfig:
    """The 2D U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) and its padded variant.

    Attributes:
        in_channels, classes: image channels in, class scores out.
        levels: number of 2x2 max-poolings (paper: 4).
        features, growth: stage widths ``F_i`` (paper: 64, ``double``: 64 .. 1024).
        kernel, depth: each stage is ``depth`` convolutions of ``kernel x kernel``.
        padding: ``valid`` (the paper: 572x572 -> 388x388) or ``same``.
        norm: ``none`` | ``batch``; bias: conv biases (padded U-Nets with BatchNorm drop them).
        half_first: the first conv of each stage outputs half the stage's channels.
        bottleneck_stages: conv stages at the bottom of the U: the first widens to ``F_L``, any
            further ones keep that width (the padded variant has two).
        pool_ceil: ceil-mode pooling (odd sizes keep their last row/column).
        upsample: ``transposed`` (the paper's 2x2 up-convolution halving the channels) or
            ``bilinear`` (bilinear interpolation, then a 1x1 conv halving the channels).
        merge: ``crop`` (crop the skip to the up-sampled map), ``pad`` (zero-pad the up-sampled
            map to the skip's size) or ``interpolate`` (resize it bilinearly, corners aligned).
        skip_pooled: the skip of each level below the first is its map after the pooling, not
            before (yassouali's ``UNet``, whose checkpoints ``waveunet image import-checkpoint``
            reads); needs padded convolutions and a ``pad`` or ``interpolate`` merge.
        input_mean, input_std: per-channel standardisation of the input inside the network, for
            weights trained on standardised images; absent: the [0, 1] pixel values go in as they are.
        output_size: desired output tile side (pixels) of a training example.
    """

    in_channels: int = 1
    classes: int = 2
    levels: int = 4
    features: int = 64
    growth: str = "double"
    kernel: int = 3
    depth: int = 2
    padding: str = "valid"
    norm: str = "none"
    bias: bool = True
    half_first: bool = False
    bottleneck_stages: int = 1
    pool_ceil: bool = False
    upsample: str = "transposed"
    merge: str = "crop"
    activation: str = "relu"
    skip_pooled: bool = False
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    output_size: int = 388
    name: str = "custom"

    def __post_init__(self):
        _check_choices(self, UNET2D_CHOICES)
        if self.bottleneck_stages < 1:
            raise ValueError("UNet2dConfig.bottleneck_stages must be at least 1")
        if self.skip_pooled and (self.padding != "same" or self.merge == "crop"):
            raise ValueError("UNet2dConfig.skip_pooled needs padding = \"same\" and merge = \"pad\" or \"interpolate\"")
        _check_normalisation(self, self.in_channels)

    @property
    def widths(self) -> list[int]:
        return feature_widths(self.features, self.growth, self.levels + 1)


@dataclass(frozen=True)
class UNetResnetConfig:
    """A U-Net whose contracting path is a ResNet (He et al., 2016): yassouali's ``UNetResnet``.

    See ``docs/specs/unet-resnet.md``. The encoder's four stages (``x1 .. x4``) feed a decoder of
    3x3 convolutions and 4x4 transposed convolutions (stride 2) that merges ``[up-sampled, skip]``
    after resizing the up-sampled map to the skip, and a last resize to the input's size, so the
    output always has the input's height and width.

    Attributes:
        in_channels, classes: image channels in, class scores out.
        encoder: ``resnet18`` | ``resnet34`` (basic blocks) | ``resnet50`` | ``resnet101`` |
            ``resnet152`` (bottlenecks), built from torchvision's blocks.
        deep_stem: three 3x3 convolutions (64, 64, 128 channels) instead of one 7x7 (64), as the
            original's PyTorch-Encoding ResNets (``deep_base``).
        dilated: stages 3 and 4 keep stride 1 and dilate by 2 and 4 instead (output stride 8,
            not 32); bottleneck encoders only.
        encoder_weights: how :func:`waveunet.build_model` and training initialise the encoder:
            absent (random), ``"imagenet"`` (torchvision's ImageNet weights, from the torch hub
            cache or downloaded into it) or the path of a ResNet state dict (``.pth``).
        decoder_norm, decoder_activation: after each decoder convolution: the original has
            neither (``none``, ``linear``); ``batch`` and ``relu`` are options.
        input_mean, input_std: per-channel standardisation of the input inside the network (e.g.
            ImageNet's for ImageNet weights); absent: the [0, 1] pixel values go in as they are.
        output_size: the side of a training tile (pixels): any size works.
    """

    in_channels: int = 3
    classes: int = 2
    encoder: str = "resnet50"
    deep_stem: bool = False
    dilated: bool = False
    encoder_weights: str | None = None
    decoder_norm: str = "none"
    decoder_activation: str = "linear"
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    output_size: int = 512
    name: str = "custom"

    def __post_init__(self):
        _check_choices(self, UNET_RESNET_CHOICES)
        if self.in_channels < 1 or self.classes < 1 or self.output_size < 1:
            raise ValueError("UNetResnetConfig.in_channels, classes and output_size must be positive")
        if self.dilated and self.block == "basic":
            raise ValueError(f"UNetResnetConfig.dilated needs a bottleneck encoder (resnet50, resnet101, resnet152); "
                             f"torchvision's basic blocks of {self.encoder} do not dilate")
        if self.encoder_weights is not None and not self.encoder_weights:
            raise ValueError("UNetResnetConfig.encoder_weights must be \"imagenet\" or a file path (or absent)")
        _check_normalisation(self, self.in_channels)

    @property
    def block(self) -> str:
        """``basic`` or ``bottleneck``."""
        return RESNETS[self.encoder][0]

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        """Residual blocks in each of the four stages."""
        return RESNETS[self.encoder][1]

    @property
    def output_stride(self) -> int:
        """The encoder's total down-sampling: 8 when dilated, else 32."""
        return 8 if self.dilated else 32


CONFIG_TYPES = {"wave-u-net": WaveUNetConfig, "unet2d": UNet2dConfig, "unet-resnet": UNetResnetConfig}
#: the config types of image networks
IMAGE_CONFIGS = (UNet2dConfig, UNetResnetConfig)


def config_kind(config) -> str:
    """``"wave-u-net"``, ``"unet2d"`` or ``"unet-resnet"``."""
    for kind, cls in CONFIG_TYPES.items():
        if isinstance(config, cls):
            return kind
    raise TypeError(f"not a model config: {type(config).__name__}")


def config_to_dict(config) -> dict[str, Any]:
    """A plain dict (JSON- and ``torch.load(weights_only=True)``-safe) with the config's ``kind``."""
    d = dataclasses.asdict(config)
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    return {"kind": config_kind(config), **d}


def config_from_dict(d: dict[str, Any], source: str = "config"):
    """Inverse of :func:`config_to_dict`; unknown keys or bad values raise :class:`WaveUNetError`."""
    d = dict(d)
    kind = d.pop("kind", "wave-u-net")
    if kind not in CONFIG_TYPES:
        raise WaveUNetError(f"{source}: unknown model kind {kind!r}")
    cls = CONFIG_TYPES[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise WaveUNetError(f"{source}: unknown {kind} config key(s): {', '.join(unknown)}")
    try:
        return cls(**d)
    except (TypeError, ValueError) as error:
        raise WaveUNetError(f"{source}: {error}") from None


__all__ = ["WaveUNetConfig", "UNet2dConfig", "UNetResnetConfig", "IMAGE_CONFIGS", "RESNETS", "config_to_dict",
           "config_from_dict", "config_kind", "feature_widths"]
