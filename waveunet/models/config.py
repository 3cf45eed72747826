"""Typed configurations of the two networks.

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
    "merge": ("crop", "pad"),
    "activation": ("leaky_relu", "relu"),
}


def _check_choices(config, choices: dict[str, tuple[str, ...]]) -> None:
    for name, allowed in choices.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"{type(config).__name__}.{name} must be one of {', '.join(allowed)}; got {value!r}")


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
        merge: ``crop`` (crop the skip to the up-sampled map) or ``pad`` (resize the up-sampled
            map to the skip's size).
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
    output_size: int = 388
    name: str = "custom"

    def __post_init__(self):
        _check_choices(self, UNET2D_CHOICES)
        if self.bottleneck_stages < 1:
            raise ValueError("UNet2dConfig.bottleneck_stages must be at least 1")

    @property
    def widths(self) -> list[int]:
        return feature_widths(self.features, self.growth, self.levels + 1)


CONFIG_TYPES = {"wave-u-net": WaveUNetConfig, "unet2d": UNet2dConfig}


def config_kind(config) -> str:
    """``"wave-u-net"`` or ``"unet2d"``."""
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


__all__ = ["WaveUNetConfig", "UNet2dConfig", "config_to_dict", "config_from_dict", "config_kind",
           "feature_widths"]
