"""What a model name on the command line (or in ``waveunet.load_model``) means: the one resolver.

A name is looked up, in this order, as

1. a preset (``M4``, ``unet2d-padded``; only where a preset makes sense: ``waveunet info``),
2. a model bundled with the package (``demo``: ``waveunet/pretrained/demo.pt``),
3. a checkpoint file, or an ONNX file (``*.onnx``, from ``waveunet export``; run by onnxruntime,
   see :mod:`waveunet.onnx_model`).

and, where a command needs one kind of network, checked to be of that kind (``audio``: a
Wave-U-Net; ``image``: a 2D U-Net or a U-Net with a ResNet encoder), so that every command refuses the wrong kind with the same
one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import model_from_checkpoint, read_checkpoint
from .errors import WaveUNetError
from .models.config import config_from_dict, config_kind
from .models.presets import PRESETS
from .models.registry import model_from_config

BUNDLED_DIR = Path(__file__).parent / "pretrained"

#: config kind -> (task family, what it is, the command for it)
KINDS = {
    "wave-u-net": ("audio", "a Wave-U-Net (audio) model", "waveunet separate"),
    "unet2d": ("image", "a 2D U-Net (image) model", "waveunet image segment"),
    "unet-resnet": ("image", "a U-Net with a ResNet encoder (image) model", "waveunet image segment"),
}
FAMILIES = ("audio", "image")


def bundled_models() -> list[str]:
    """Names of the checkpoints shipped inside the package (``waveunet/pretrained/<name>.pt``)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name.

    Attributes:
        name: the name results go under: the preset or bundled name, or the checkpoint file's stem.
        config: the model's config.
        checkpoint: the checkpoint dict (:func:`waveunet.checkpoint.read_checkpoint`); None for a preset.
        bundled: whether the model ships with the package.
        onnx: an ONNX file: ``checkpoint`` holds its path and the metadata of the checkpoint it was
            exported from, and :meth:`load` runs it through onnxruntime.
    """

    name: str
    config: object
    checkpoint: dict | None = field(default=None, repr=False)
    bundled: bool = False
    onnx: bool = False

    @property
    def path(self) -> Path | None:
        """The checkpoint file, or None for a preset."""
        return Path(self.checkpoint["path"]) if self.checkpoint else None

    @property
    def metadata(self) -> dict:
        return dict(self.checkpoint.get("metadata", {})) if self.checkpoint else {}

    @property
    def is_demo(self) -> bool:
        """The bundled demonstration model (commands say once what it is)."""
        return self.bundled and self.name == "demo"

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model in eval mode on ``device``: trained weights for a checkpoint, fresh ones for a preset.

        An ONNX file gives a :class:`waveunet.onnx_model.OnnxModel` (``device`` may then also be
        ``auto``: onnxruntime's CUDA provider where it has one).
        """
        if self.onnx:
            from .onnx_model import load_onnx_model

            return load_onnx_model(self.path, device)
        model = model_from_checkpoint(self.checkpoint) if self.checkpoint else model_from_config(self.config).eval()
        return model.to(device)


def resolve_model(name_or_path: str | os.PathLike, *, kind: str | None = None, presets: bool = False) -> ModelSource:
    """Resolve a preset name (if ``presets``), a bundled name or a checkpoint path.

    Args:
        kind: ``"audio"`` or ``"image"`` to refuse models of the other kind; None accepts both.

    Raises:
        WaveUNetError: one line naming the model and the problem.
    """
    text = str(name_or_path)
    if presets and text in PRESETS:
        source = ModelSource(text, PRESETS[text])
    elif Path(text).suffix.lower() == ".onnx":
        from .onnx_model import read_onnx_metadata

        config, metadata, _ = read_onnx_metadata(text)
        source = ModelSource(Path(text).stem, config, {"path": text, "metadata": metadata}, onnx=True)
    else:
        path = Path(name_or_path)
        bundled = not path.exists() and path.suffix == "" and (BUNDLED_DIR / f"{text}.pt").is_file()
        if bundled:
            path = BUNDLED_DIR / f"{text}.pt"
        elif not path.exists():
            if path.suffix or os.sep in text:  # meant as a file
                raise WaveUNetError(f"{text}: no such checkpoint file")
            choices = f"presets: {', '.join(PRESETS)}; " if presets else ""
            raise WaveUNetError(f"{text}: no such model ({choices}bundled models: {', '.join(bundled_models()) or 'none'}; "
                                f"or a checkpoint file)")
        checkpoint = read_checkpoint(path)
        config = config_from_dict(checkpoint["config"], source=checkpoint["path"])
        source = ModelSource(text if bundled else path.stem, config, checkpoint, bundled)
    if kind is not None:
        check_kind(source.config, kind, text)
    return source


def check_kind(config, kind: str, name: str) -> None:
    """:class:`WaveUNetError` unless ``config`` is of the task family ``kind`` (``audio`` or ``image``)."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown model kind {kind!r} ({', '.join(FAMILIES)})")
    family, what, command = KINDS[config_kind(config)]
    if family != kind:
        wanted = next(w for f, w, _ in KINDS.values() if f == kind)
        raise WaveUNetError(f"{name}: {what}, not {wanted}; use `{command}`")


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu", *, kind: str | None = None) -> nn.Module:
    """Load a model from one of our checkpoints or a bundled name (``"demo"``), in eval mode.

    The model carries ``model.metadata`` (sample rate, sources, version, training step, ...).
    ``kind`` (``"audio"``, ``"image"``) refuses a model of the other kind.
    """
    return resolve_model(path_or_name, kind=kind).load(device)
