"""U-Net building blocks for any number of spatial dimensions.

The 1D Wave-U-Net (Stoller et al., 2018) and the 2D U-Net (Ronneberger et al., 2015) are the same
machine: a contracting path of :class:`DownBlock` (conv stage, keep the skip, down-sample), a
bottleneck, and an expanding path of :class:`UpBlock` (up-sample, merge the skip, conv stage).
A U-Net whose contracting path is someone else's encoder (a ResNet) keeps only the expanding half,
:class:`ExpandingPath`, over the encoder's feature maps. Everything here takes ``dim`` (1 for ``[batch, channels, time]``, 2 for
``[batch, channels, height, width]``) as a constructor argument.

Every part has a name, so that state-dict keys read like the architecture:
``unet.down.3.stage.0.conv.weight`` is the weight of the first convolution of the fourth level's
conv stage; ``unet.up.0.resample.weight`` the first up-sampling's learned interpolation weights.

Every layer that changes the spatial size carries a tuple ``size_ops`` (see :mod:`waveunet.sizes`);
:func:`collect_size_ops` collects them in forward order, so a network's valid input and output sizes
follow from the very modules it is built of.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import sizes

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


def collect_size_ops(module: nn.Module) -> list:
    """The size ops of ``module`` in forward order: a layer's own ``size_ops``, else its children's."""
    own = getattr(module, "size_ops", None)
    if own is not None:
        return list(own)
    return [op for child in module.children() for op in collect_size_ops(child)]


def make_norm(kind: str, dim: int, channels: int, momentum: float = 0.1) -> nn.Module:
    """``none`` | ``batch`` | ``group`` (GroupNorm with one group per 8 channels, as the PyTorch Wave-U-Net)."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return _BATCH_NORM[dim](channels, momentum=momentum)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    raise ValueError(f"unknown norm {kind!r} (none, batch, group)")


def make_activation(kind: str, negative_slope: float = 0.2, inplace: bool = False) -> nn.Module:
    """``leaky_relu`` (slope ``negative_slope``) | ``relu`` | ``tanh`` | ``linear``.

    ``inplace`` suits an activation that directly follows a conv or norm, whose output nothing else reads.
    """
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=inplace)
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "linear":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r} (leaky_relu, relu, tanh, linear)")


class Normalize(nn.Module):
    """Fixed per-channel standardisation ``(x - mean) / std`` of ``[batch, channels, *size]`` inputs.

    The numbers belong to the model's config, not to its weights: they are non-persistent buffers
    (no state-dict keys), moved to the model's device with it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"need one positive std per mean, got mean {list(mean)} and std {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


# --- convolutions ------------------------------------------------------------------------------


class ConvLayer(nn.Module):
    """``conv`` -> ``norm`` -> ``act``: ``[batch, in_channels, *size]`` -> ``[batch, out_channels, *size']``.

    ``padding="valid"`` uses no padding (the output shrinks by ``kernel - 1``); ``"same"`` zero-pads
    ``(kernel - 1) / 2`` on each side (odd kernels), so only the stride changes the size. A norm of
    ``none`` and an activation of ``linear`` are identities (no state-dict keys): a bare convolution.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                 padding: str = "valid", norm: str = "none", activation: str = "leaky_relu",
                 negative_slope: float = 0.2, bias: bool = True, norm_momentum: float = 0.1):
        super().__init__()
        if padding == "same" and kernel % 2 == 0:
            raise ValueError(f"same padding needs an odd kernel, got {kernel}")
        pad = (kernel - 1) // 2 if padding == "same" else 0
        self.conv = _CONV[dim](in_channels, out_channels, kernel, stride=stride, padding=pad, bias=bias)
        self.norm = make_norm(norm, dim, out_channels, norm_momentum)
        self.act = make_activation(activation, negative_slope, inplace=True)
        self.size_ops = (sizes.Conv(kernel, stride, padding),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvStage(nn.Sequential):
    """Conv layers in a row through the channel ``widths``: ``widths[0] -> widths[1] -> ... -> widths[-1]``.

    ``ConvStage(1, [24, 48], 15)`` is the Wave-U-Net's one conv per level; ``ConvStage(2, [64, 64,
    64], 3)`` the U-Net's two 3x3 convs. Layer ``i`` is the part named ``str(i)``.
    """

    def __init__(self, dim: int, widths: Sequence[int], kernel: int, **layer_options):
        if len(widths) < 2:
            raise ValueError(f"a conv stage needs at least two widths (in and out), got {list(widths)}")
        super().__init__(*(ConvLayer(dim, a, b, kernel, **layer_options) for a, b in zip(widths, widths[1:])))


# --- down-sampling -----------------------------------------------------------------------------


class Decimate(nn.Module):
    """Keep every ``factor``-th sample on each spatial axis (the paper's down-sampling, no filter)."""

    def __init__(self, dim: int, factor: int = 2, padding: str = "valid"):
        super().__init__()
        self.dim, self.factor = dim, factor
        self.size_ops = (sizes.Decimate(factor, padding),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (Ellipsis,) + (slice(None, None, self.factor),) * self.dim
        return x[index]


class MaxPool(nn.Module):
    """Max-pooling by ``factor`` (``ceil_mode`` keeps the last, partial window)."""

    def __init__(self, dim: int, factor: int = 2, ceil_mode: bool = False):
        super().__init__()
        self.pool = _MAX_POOL[dim](factor, ceil_mode=ceil_mode)
        self.size_ops = (sizes.Pool(factor, ceil_mode),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def sinc_lowpass(factor: int, taps: int = 15) -> torch.Tensor:
    """The PyTorch Wave-U-Net's fixed low-pass: windowed sinc, cutoff ``0.5 / factor``, sum 1.

    The reference's window is ``0.42 - 0.5 cos(2 pi i / M) + 0.08 cos(4 pi M)``; the last term is
    a constant (a typo for a Blackman window), reproduced so imported models stay exact.
    Returns ``[taps]``.
    """
    m = taps - 1
    fc = 0.5 / factor
    i = torch.arange(taps, dtype=torch.float64)
    t = i - m / 2
    h = torch.where(t == 0, torch.full_like(t, 2 * math.pi * fc), torch.sin(2 * math.pi * fc * t) / torch.where(t == 0, 1, t))
    h = h * (0.42 - 0.5 * torch.cos(2 * math.pi * i / m) + 0.08 * math.cos(4 * math.pi * m))
    return (h / h.sum()).float()


class SincResample(nn.Module):
    """Fixed low-pass resampling by ``factor`` (1D), as the PyTorch Wave-U-Net's ``Resample1d``.

    Down: reflect-pad ``taps // 2``, depthwise filter with stride ``factor``: n -> (n - 1) / factor + 1
    (n must be 1 modulo ``factor``). Up: reflect-pad, depthwise transposed filter with stride
    ``factor``, centre crop to (n - 1) * factor + 1. The filter is a buffer (not trained), stored
    per channel so that imported checkpoints keep theirs. Shapes ``[batch, channels, time]``.
    """

    def __init__(self, channels: int, factor: int, up: bool = False, taps: int = 15):
        super().__init__()
        self.factor, self.up, self.taps = factor, up, taps
        self.register_buffer("filter", sinc_lowpass(factor, taps).expand(channels, 1, taps).clone())
        self.size_ops = (sizes.Resample(factor, up, taps // 2),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        x = F.pad(x, (self.taps // 2, self.taps // 2), mode="reflect")
        if not self.up:
            return F.conv1d(x, self.filter, stride=self.factor, groups=x.shape[1])
        y = F.conv_transpose1d(x, self.filter, stride=self.factor, groups=x.shape[1])
        return center_crop(y, [(n - 1) * self.factor + 1])


# --- up-sampling -------------------------------------------------------------------------------


def interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """``[..., n]`` and ``[..., n or n-1]`` -> ``[..., len(even) + len(odd)]`` with ``out[2j] = even[j]``."""
    out = even.new_empty(*even.shape[:-1], even.shape[-1] + odd.shape[-1])
    # Two strided writes into one buffer: stacking and concatenating would copy everything twice more.
    out[..., 0::2] = even
    out[..., 1::2] = odd
    return out


class LinearUpsample(nn.Module):
    """Linear interpolation by 2 along time, as in the Wave-U-Net paper.

    Valid ("context") mode: n -> 2n-1, corners aligned: ``out[2j] = h[j]``,
    ``out[2j+1] = (h[j] + h[j+1]) / 2``. Same mode: n -> 2n with TF1 ``resize_bilinear`` semantics
    (no corner alignment, no half-pixel centres): as above, and the last sample repeats ``h[n-1]``.
    Shapes ``[batch, channels, time]``.
    """

    def __init__(self, padding: str = "valid"):
        super().__init__()
        self.padding = padding
        self.size_ops = (sizes.Upsample(2, padding),)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            h_next = torch.cat([h[..., 1:], h[..., -1:]], dim=-1)
        else:
            h_next = h[..., 1:]
        return interleave(h, (h[..., : h_next.shape[-1]] + h_next) / 2)


class LearnedUpsample(nn.Module):
    """The paper's learned interpolation layer (M5): one ``weight`` per feature channel.

    ``out[2j] = h[j]``, ``out[2j+1] = sigmoid(w) h[j] + (1 - sigmoid(w)) h[j+1]``; ``w = 0`` starts
    as plain linear interpolation. Valid mode n -> 2n-1; same mode n -> 2n with a zero right
    neighbour for the last sample. Shapes ``[batch, channels, time]``.
    """

    def __init__(self, channels: int, padding: str = "valid"):
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.zeros(channels))
        self.size_ops = (sizes.Upsample(2, padding),)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h_next = h[..., 1:]
        if self.padding == "same":
            h_next = F.pad(h_next, (0, 1))
        a = torch.sigmoid(self.weight)[:, None]
        return interleave(h, a * h[..., : h_next.shape[-1]] + (1 - a) * h_next)


class TransposedUpsample(nn.Module):
    """Transposed convolution ``conv`` (then ``norm`` and ``act``): n -> (n - 1) * stride - 2 * padding + kernel.

    The U-Net's 2x2 "up-convolution" is ``kernel=2, stride=2`` (n -> 2n) without norm or
    activation; the PyTorch Wave-U-Net's learned up-sampling uses ``padding=kernel-1`` and is
    normalised and activated like its other convolutions.
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int, kernel: int, stride: int,
                 padding: int = 0, bias: bool = True, *, norm: str = "none", activation: str = "linear",
                 negative_slope: float = 0.2, norm_momentum: float = 0.1):
        super().__init__()
        self.conv = _CONV_T[dim](in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias)
        self.norm = make_norm(norm, dim, out_channels, norm_momentum)
        self.act = make_activation(activation, negative_slope)
        self.size_ops = (sizes.TransposedConv(kernel, stride, padding),)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(h)))


class InterpolateUpsample(nn.Module):
    """(Bi)linear interpolation by 2 with aligned corners, then a 1x1 ``conv`` to ``out_channels``.

    The common alternative to the U-Net's up-convolution: n -> 2n on every spatial axis, the
    channels changed by the 1x1 convolution (as the transposed convolution would change them).
    """

    def __init__(self, dim: int, in_channels: int, out_channels: int):
        super().__init__()
        self.dim = dim
        self.conv = _CONV[dim](in_channels, out_channels, 1)
        self.size_ops = (sizes.Upsample(2, "same"),)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(h, scale_factor=2, mode=_INTERPOLATION[self.dim], align_corners=True)
        return self.conv(up)


# --- crop and merge ----------------------------------------------------------------------------


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the trailing ``len(size)`` axes of ``x`` to ``size``, centred (extra sample on the right)."""
    index = [slice(None)] * (x.dim() - len(size))
    for have, want in zip(x.shape[-len(size):], size):
        if want > have:
            raise ValueError(f"cannot crop length {have} to {want}")
        left = (have - want) // 2
        index.append(slice(left, left + want))
    return x[tuple(index)]


def center_pad(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad (or crop) the trailing axes of ``x`` to ``size``, centred."""
    pads = []
    for have, want in zip(reversed(x.shape[-len(size):]), reversed(list(size))):
        pads += [(want - have) // 2, want - have - (want - have) // 2]
    return F.pad(x, pads)


def crop_and_concat(skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Concatenate ``[crop(skip), crop(h)]`` on channels, both centre-cropped to their common size."""
    size = [min(a, b) for a, b in zip(skip.shape[2:], h.shape[2:])]
    return torch.cat([center_crop(skip, size), center_crop(h, size)], dim=1)


def interpolate_to(h: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``h`` resized to ``size`` on its trailing axes by (bi/tri)linear interpolation with aligned
    corners; returned unchanged where it has that size already."""
    size = tuple(int(n) for n in size)
    if tuple(h.shape[2:]) == size:
        return h
    return F.interpolate(h, size=size, mode=_INTERPOLATION[h.dim() - 2], align_corners=True)


def interpolate_and_concat(skip: torch.Tensor, h: torch.Tensor, skip_first: bool = True) -> torch.Tensor:
    """Concatenate the skip and ``h`` resized to the skip's size by :func:`interpolate_to`:
    ``[skip, h]``, or ``[h, skip]`` with ``skip_first=False``."""
    h = interpolate_to(h, skip.shape[2:])
    return torch.cat([skip, h] if skip_first else [h, skip], dim=1)


def resize_and_concat(skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Concatenate ``[skip, h]`` after zero-padding (or cropping) ``h`` to the skip's size (padded U-Nets)."""
    return torch.cat([skip, center_pad(h, skip.shape[2:])], dim=1)


class CropConcat(nn.Module):
    """The valid-convolution U-Net's merge: ``forward(skip, h) = [crop(skip), crop(h)]`` (see :func:`crop_and_concat`)."""

    def forward(self, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return crop_and_concat(skip, h)


class ResizeConcat(nn.Module):
    """The padded U-Net's merge: ``forward(skip, h) = [skip, resize(h)]`` (see :func:`resize_and_concat`)."""

    def forward(self, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return resize_and_concat(skip, h)


class InterpolateConcat(nn.Module):
    """The merge of U-Nets that interpolate instead of padding: ``forward(skip, h)`` is ``[skip,
    interpolate(h)]`` (``skip_first``) or ``[interpolate(h), skip]`` (see :func:`interpolate_and_concat`)."""

    def __init__(self, skip_first: bool = True):
        super().__init__()
        self.skip_first = skip_first

    def forward(self, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return interpolate_and_concat(skip, h, self.skip_first)


MERGES = {"crop": CropConcat, "pad": ResizeConcat, "interpolate": InterpolateConcat}


# --- the blocks ---------------------------------------------------------------------------------


class DownBlock(nn.Module):
    """``stage`` (its output is kept as the skip feature), optional ``post_stage``, then ``resample``.

    ``resample`` is any down-sampling module: decimation, max-pooling, a strided conv, a fixed
    low-pass. ``post_stage`` convolves again after the skip is taken (the PyTorch Wave-U-Net does).
    With ``pooled_skip`` the skip is the down-sampled map instead (yassouali's padded U-Net merges
    its pooled maps). ``forward(x) -> (down-sampled, skip)``.
    """

    def __init__(self, stage: nn.Module, resample: nn.Module, post_stage: nn.Module | None = None,
                 pooled_skip: bool = False):
        super().__init__()
        self.stage = stage
        self.post_stage = post_stage  # registered before `resample`: parameters in forward order
        self.resample = resample
        self.pooled_skip = pooled_skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.stage(x)
        h = skip if self.post_stage is None else self.post_stage(skip)
        h = self.resample(h)
        return h, (h if self.pooled_skip else skip)


class UpBlock(nn.Module):
    """``resample`` (up-sampling), optional ``pre_stage``, ``merge`` with the skip feature, ``stage``.

    ``forward(h, skip) = stage(merge(skip, pre_stage(resample(h))))``; ``merge`` is ``"crop"``
    (:class:`CropConcat`), ``"pad"`` (:class:`ResizeConcat`), ``"interpolate"``
    (:class:`InterpolateConcat`) or a merge module.
    """

    def __init__(self, resample: nn.Module, stage: nn.Module, merge: str | nn.Module = "crop",
                 pre_stage: nn.Module | None = None):
        super().__init__()
        self.resample = resample
        self.pre_stage = pre_stage
        self.merge = MERGES[merge]() if isinstance(merge, str) else merge
        self.stage = stage

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = self.resample(h)
        if self.pre_stage is not None:
            h = self.pre_stage(h)
        return self.stage(self.merge(skip, h))


class UNet(nn.Module):
    """The contracting path ``down``, the ``bottleneck`` and the expanding path ``up``; returns the last feature map.

    ``forward(x) -> features``: ``[batch, in, *size]`` -> ``[batch, F_0, *size']`` where ``size'``
    follows from :meth:`size_paths` (equal to ``size`` for same-padded networks).
    """

    def __init__(self, down: Sequence[DownBlock], bottleneck: nn.Module, up: Sequence[UpBlock]):
        super().__init__()
        if len(down) != len(up):
            raise ValueError("a U-Net needs as many up blocks as down blocks")
        self.down = nn.ModuleList(down)
        self.bottleneck = bottleneck
        self.up = nn.ModuleList(up)

    def size_paths(self) -> sizes.SizePaths:
        """The size ops of the contracting path, the bottleneck and the expanding path."""
        return sizes.SizePaths(collect_size_ops(self.down), collect_size_ops(self.bottleneck), collect_size_ops(self.up))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x, skip = block(x)
            skips.append(skip)
        x = self.bottleneck(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return x


class ExpandingPath(nn.Module):
    """The expanding half of a U-Net on top of an encoder that returns its feature maps (a ResNet's
    stages, say): the ``bottleneck`` on the deepest map, then each of the ``up`` blocks merges the
    next shallower one.

    ``forward(features) -> h``: ``features`` are ``[batch, C_i, *size_i]`` from shallowest to
    deepest, one more than there are up blocks; ``h`` has the resolution of ``features[0]`` (as the
    up blocks make it).
    """

    def __init__(self, bottleneck: nn.Module, up: Sequence[UpBlock]):
        super().__init__()
        self.bottleneck = bottleneck
        self.up = nn.ModuleList(up)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.up) + 1:
            raise ValueError(f"an expanding path with {len(self.up)} up blocks merges {len(self.up) + 1} feature "
                             f"maps, got {len(features)}")
        h = self.bottleneck(features[-1])
        for block, skip in zip(self.up, reversed(features[:-1])):
            h = block(h, skip)
        return h
