"""What ``waveunet info`` says about a model: parameters, sizes, context, receptive field and compute (``waveunet info``).

Everything is derived without touching real weights: the model is built on PyTorch's ``meta``
device (shapes only, no memory), its sizes come from :mod:`waveunet.sizes`, and the
multiply-accumulates (MACs) of one forward pass are counted by hooks on the convolutions while a
``meta`` tensor flows through it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import torch
from torch import nn

from .blocks import SincResample
from .errors import WaveUNetError
from .models.config import UNet2dConfig, UNetResnetConfig, WaveUNetConfig, config_kind
from .models.presets import DESCRIPTIONS
from .models.registry import model_from_config
from .resolve import bundled_models, resolve_model


def meta_model(config: WaveUNetConfig | UNet2dConfig | UNetResnetConfig) -> nn.Module:
    """The model of ``config`` on the ``meta`` device (no weights in memory), in eval mode."""
    with torch.device("meta"):
        return model_from_config(config).eval()


def count_parameters(model: nn.Module) -> int:
    """Entries of the model's ``nn.Parameter`` tensors (fixed filters are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # every input value is scattered to out_channels/groups x kernel outputs
        return inputs[0].numel() * module.out_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
    if isinstance(module, SincResample):  # depthwise filter over the reflect-padded input
        x = inputs[0]
        return (x.numel() // x.shape[-1] * (x.shape[-1] + module.taps - 1) if module.up else output.numel()) * module.taps
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the convolutions (plain, transposed, fixed filters) in ``model(x)``.

    Norms, activations and interpolation are left out: they cost a few operations per value,
    against hundreds to thousands per output value for the convolutions.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += _conv_macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, SincResample, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _receptive_field(config, model) -> int:
    """Input samples (pixels per axis) that can influence one output: for same-padded networks,
    those of the same network with valid convolutions (padding changes only the borders)."""
    if isinstance(config, UNetResnetConfig):
        return model.receptive_field  # along the encoder's deepest path, through every resize
    if getattr(config, "skip_pooled", False):
        return _pooled_skip_receptive_field(config)
    if config.padding == "valid" and getattr(config, "merge", "crop") == "crop":
        return model.training_sizes.receptive_field
    valid = dataclasses.replace(config, padding="valid", **({"merge": "crop"} if hasattr(config, "merge") else {}))
    return meta_model(valid).sizes(1).receptive_field


def _pooled_skip_receptive_field(config: UNet2dConfig) -> int:
    """The receptive field of a U-Net that convolves, then pools (``skip_pooled``): its levels'
    convolutions run before their pooling, so no valid-convolution twin has its sizes."""
    from .models.unet_resnet import receptive_field

    convs = [(config.kernel, 1, 1)] * config.depth
    pool = [(2, 1, 2)]
    steps = convs + (convs + pool) * (config.levels - 1) + convs + pool + convs * (config.bottleneck_stages - 1)
    up = (2 if config.upsample == "bilinear" else 1, 1, 0.5)  # a 2x2 up-convolution reads one input per output
    steps += ([up] + convs) * config.levels + [(1, 1, 1)]  # up-sampling and convs per level, the classifier
    return receptive_field(steps)


def describe(name_or_path: str | os.PathLike, output_length: int | None = None) -> dict[str, Any]:
    """The facts ``waveunet info`` prints, as a JSON-ready dict.

    Args:
        name_or_path: a preset name, a bundled checkpoint name or a checkpoint path.
        output_length: desired output length in samples (audio) or tile side in pixels (image);
            default: the config's training size. The actual one is the smallest valid one >= it.
    """
    source = resolve_model(name_or_path, presets=True)
    config = source.config
    if output_length is not None:
        field = "output_length" if isinstance(config, WaveUNetConfig) else "output_size"
        if output_length < 1:
            raise WaveUNetError(f"--output-length must be positive, got {output_length}")
        config = dataclasses.replace(config, **{field: output_length})
    model = meta_model(config)
    size = model.training_sizes
    info = {"name": config.name, "kind": config_kind(config), "parameters": count_parameters(model)}
    if isinstance(config, WaveUNetConfig):
        macs = count_macs(model, torch.empty(1, config.channels, size.input_length, device="meta"))
        info.update(
            input_length=size.input_length, output_length=size.output_length, context=size.context,
            receptive_field=_receptive_field(config, model), length_step=model.length_step,
            sample_rate=config.sample_rate, sources=list(config.sources), channels=config.channels,
            macs=macs, macs_per_second=round(macs * config.sample_rate / size.output_length))
    else:
        side = size.input_length
        macs = count_macs(model, torch.empty(1, config.in_channels, side, side, device="meta"))
        info.update(
            input_size=[side, side], output_size=[size.output_length] * 2, context=size.context,
            receptive_field=_receptive_field(config, model), keeps_size=model.keeps_size,
            in_channels=config.in_channels, classes=config.classes, macs=macs)
        if isinstance(config, UNetResnetConfig):
            info.update(encoder=config.encoder, deep_stem=config.deep_stem, dilated=config.dilated,
                        output_stride=config.output_stride, encoder_weights=config.encoder_weights)
    if source.checkpoint is not None:
        info.update(checkpoint=str(source.path), step=source.metadata.get("step"))
    return info


def format_info(info: dict[str, Any]) -> str:
    """Aligned human-readable lines for :func:`describe`'s dict."""
    def n(value):
        return f"{value:,}"

    rows = [("model", f"{info['name']} ({info['kind']})")]
    if "checkpoint" in info:
        rows.append(("checkpoint", f"{info['checkpoint']} (step {info.get('step')})"))
    rows.append(("parameters", n(info["parameters"])))
    if info["kind"] == "wave-u-net":
        rate = info["sample_rate"]
        rows += [
            ("sources", ", ".join(info["sources"])),
            ("channels", str(info["channels"])),
            ("sample rate", f"{n(rate)} Hz"),
            ("input length", f"{n(info['input_length'])} samples ({info['input_length'] / rate:.3f} s)"),
            ("output length", f"{n(info['output_length'])} samples ({info['output_length'] / rate:.3f} s); "
                              f"valid lengths step by {n(info['length_step'])}"),
            ("context per side", f"{n(info['context'])} samples ({info['context'] / rate * 1000:.1f} ms)"),
            ("receptive field", f"{n(info['receptive_field'])} samples ({info['receptive_field'] / rate:.3f} s)"),
            ("MACs", f"{info['macs_per_second'] / 1e9:.2f} G per second of audio"),
        ]
    else:
        (h, w), (oh, ow) = info["input_size"], info["output_size"]
        if "encoder" in info:
            stem = "deep 3x3 stem" if info["deep_stem"] else "7x7 stem"
            weights = f"; weights: {info['encoder_weights']}" if info["encoder_weights"] else ""
            rows.append(("encoder", f"{info['encoder']} ({stem}, output stride {info['output_stride']}"
                                    f"{', dilated' if info['dilated'] else ''}){weights}"))
        rows += [
            ("channels -> classes", f"{info['in_channels']} -> {info['classes']}"),
            ("input size", f"{h}x{w}" + (" (any size: output = input)" if info["keeps_size"] else "")),
            ("output size", f"{oh}x{ow}"),
            ("context per side", f"{info['context']} px"),
            ("receptive field", f"{info['receptive_field']}x{info['receptive_field']} px"),
            ("MACs", f"{info['macs'] / 1e9:.2f} G per {h}x{w} input"),
        ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def list_models() -> str:
    """What ``waveunet info`` without a model prints: the presets, each with its line, and the bundled models."""
    width = max(map(len, DESCRIPTIONS))
    lines = ["Presets (waveunet info NAME for details; build_model(NAME) in Python):"]
    lines += [f"  {name:<{width}}  {line}" for name, line in DESCRIPTIONS.items()]
    lines.append(f"Bundled models: {', '.join(bundled_models()) or 'none'} (waveunet info NAME; --model NAME)")
    return "\n".join(lines)


__all__ = ["describe", "format_info", "list_models", "count_macs", "count_parameters", "meta_model"]
