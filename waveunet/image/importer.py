"""Checkpoints of yassouali/pytorch-segmentation's trainer, for its ``UNet`` and ``UNetResnet``, in.

That trainer saves ``torch.save({"arch", "epoch", "state_dict", "optimizer", "monitor_best",
"config"})`` (``docs/specs/unet-resnet.md``); under ``torch.nn.DataParallel``, its default on GPUs,
every key starts with ``module.`` and ``arch`` says ``DataParallel``, so the architecture is read
from ``config["arch"]["type"]`` (or, for a bare state dict, from the keys). ``num_classes`` and
``in_channels`` are read from the weights' shapes, the ResNet's depth from its stages.

- ``UNet`` becomes a :class:`~waveunet.models.unet2d.UNet2d` in that network's arrangement
  (``unet2d-padded`` with ``skip_pooled`` and ``merge = "interpolate"``: the original convolves,
  then pools, and merges its pooled maps, interpolating where sizes differ)::

      ours                                  the original's
      unet.down.0.stage.j.{conv,norm}       start_conv.{3j, 3j+1}
      unet.down.i.stage.j.{conv,norm}       down{i}.down_conv.{3j, 3j+1}       i = 1, 2, 3
      unet.bottleneck.stage.j / .post_stage.j  down4.down_conv / middle_conv  (between them the pooling)
      unet.up.k.resample.conv               up{k+1}.up
      unet.up.k.stage.j.{conv,norm}         up{k+1}.up_conv.{3j, 3j+1}
      classifier.conv                       final_conv

- ``UNetResnet`` becomes a :class:`~waveunet.models.unet_resnet.UNetResnet` (deep stem, dilated):
  ``initial.0`` / ``initial.1`` / ``layerN`` are ``encoder.conv1`` / ``encoder.bn1`` /
  ``encoder.layerN`` (the blocks' names are torchvision's in both), and the decoder's layers are
  listed in :mod:`waveunet.models.unet_resnet`.

The original trainer feeds images standardised with its dataset's mean and std
(``config["train_loader"]["type"]``: :data:`DATASET_STATISTICS`); the imported model does the
same inside (``input_mean``, ``input_std``), so it takes [0, 1] pixel values like every model here.
Every key and every shape is checked: another architecture, a missing or an unexpected weight is
one :class:`~waveunet.errors.WaveUNetError`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..atomic import check_destination
from ..checkpoint import save_model
from ..errors import WaveUNetError
from ..importer import load_foreign_checkpoint, load_translated
from ..models.config import RESNETS, UNet2dConfig, UNetResnetConfig
from ..models.registry import model_from_config

ARCHITECTURES = ("UNet", "UNetResnet")
#: the original's data loaders' standardisation (dataloaders/*.py: MEAN, STD)
DATASET_STATISTICS = {
    "VOC": ((0.45734706, 0.43338275, 0.40058118), (0.23965294, 0.23532275, 0.2398498)),
    "DeepScene": ((0.45734706, 0.43338275, 0.40058118), (0.23965294, 0.23532275, 0.2398498)),
    "CityScapes": ((0.28689529, 0.32513294, 0.28389176), (0.17613647, 0.18099176, 0.17772235)),
    "ADE20K": ((0.48897059, 0.46548275, 0.4294), (0.22861765, 0.22948039, 0.24054667)),
    "COCO": ((0.43931922, 0.41310471, 0.37480941), (0.24272706, 0.23649098, 0.23429529)),
}
#: the original's UNetResnet default backbone
DEFAULT_BACKBONE = "resnet50"

_CONV_BN = {"conv": 0, "norm": 1}  # the original's x2conv: Sequential(conv, BN, ReLU, conv, BN, ReLU)


def _x2conv(theirs: str):
    return lambda m: f"{theirs}.{3 * int(m['j']) + _CONV_BN[m['part']]}."


#: (our key prefix pattern, the original's prefix), first match wins; the rest of the key is kept
_UNET_RULES = [
    (r"unet\.down\.0\.stage\.(?P<j>\d+)\.(?P<part>conv|norm)\.", _x2conv("start_conv")),
    (r"unet\.down\.(?P<i>\d+)\.stage\.(?P<j>\d+)\.(?P<part>conv|norm)\.",
     lambda m: _x2conv(f"down{m['i']}.down_conv")(m)),
    (r"unet\.bottleneck\.stage\.(?P<j>\d+)\.(?P<part>conv|norm)\.", _x2conv("down4.down_conv")),
    (r"unet\.bottleneck\.post_stage\.(?P<j>\d+)\.(?P<part>conv|norm)\.", _x2conv("middle_conv")),
    (r"unet\.up\.(?P<k>\d+)\.resample\.conv\.", lambda m: f"up{int(m['k']) + 1}.up."),
    (r"unet\.up\.(?P<k>\d+)\.stage\.(?P<j>\d+)\.(?P<part>conv|norm)\.",
     lambda m: _x2conv(f"up{int(m['k']) + 1}.up_conv")(m)),
    (r"classifier\.conv\.", lambda m: "final_conv."),
]
_UNET_RESNET_RULES = [
    (r"encoder\.conv1\.", lambda m: "initial.0."),
    (r"encoder\.bn1\.", lambda m: "initial.1."),
    (r"encoder\.(?P<layer>layer\d)\.", lambda m: f"{m['layer']}."),
    (r"decoder\.bottleneck\.0\.conv\.", lambda m: "conv1."),
    (r"decoder\.up\.(?P<k>\d)\.resample\.conv\.", lambda m: f"upconv{int(m['k']) + 1}."),
    (r"decoder\.up\.(?P<k>\d)\.stage\.0\.conv\.", lambda m: f"conv{int(m['k']) + 2}."),
    (r"head\.0\.conv\.", lambda m: "upconv4."),
    (r"head\.1\.conv\.", lambda m: "conv5."),
    (r"head\.2\.conv\.", lambda m: "upconv5."),
    (r"classifier\.0\.conv\.", lambda m: "conv6."),
    (r"classifier\.1\.conv\.", lambda m: "conv7."),
]
RULES = {"UNet": _UNET_RULES, "UNetResnet": _UNET_RESNET_RULES}


def original_key(architecture: str, ours: str) -> str:
    """The original's state-dict key for our key ``ours`` of an imported ``architecture``."""
    for pattern, replace in RULES[architecture]:
        match = re.match(pattern, ours)
        if match:
            return replace(match) + ours[match.end():]
    raise KeyError(f"{ours}: no counterpart in the original {architecture}")


@dataclass(frozen=True)
class OriginalCheckpoint:
    """What a checkpoint of the original trainer holds, as far as importing goes."""

    architecture: str  # UNet | UNetResnet
    state: dict[str, torch.Tensor]  # module. prefixes removed
    config: dict  # the trainer's JSON config ({} for a bare state dict)
    epoch: int | None


def read_original_checkpoint(path: str | os.PathLike) -> OriginalCheckpoint:
    """Read a checkpoint of the original trainer (or a bare state dict of one of its models)."""
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: {'is a folder, not a' if path.is_dir() else 'no such'} checkpoint file")
    ckpt = load_foreign_checkpoint(path)  # the trainer's monitor_best may be a NumPy scalar
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WaveUNetError(f"{path}: not a checkpoint of yassouali/pytorch-segmentation (no state_dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    arch = config.get("arch", {}).get("type") if isinstance(config.get("arch"), dict) else None
    if arch is None and isinstance(ckpt.get("arch"), str) and ckpt["arch"] != "DataParallel":
        arch = ckpt["arch"]
    if arch is None:  # a bare state dict: the keys tell
        arch = "UNetResnet" if any(k.startswith("initial.") for k in state) else \
            "UNet" if any(k.startswith("start_conv.") for k in state) else None
        if arch is None:
            raise WaveUNetError(f"{path}: neither a UNet (start_conv.*) nor a UNetResnet (initial.*) state dict")
    if arch not in ARCHITECTURES:
        raise WaveUNetError(f"{path}: a checkpoint of {arch}; only {' and '.join(ARCHITECTURES)} import")
    epoch = ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None
    return OriginalCheckpoint(arch, state, config, epoch)


def _shape(state: dict, key: str, path: Path, architecture: str) -> tuple[int, ...]:
    if key not in state:
        raise WaveUNetError(f"{path}: weights do not fit the original {architecture} (missing {key})")
    return tuple(state[key].shape)


def _backbone(original: OriginalCheckpoint, path: Path) -> str:
    """The ResNet depth: the config's backbone, checked against the stages' block counts."""
    state = original.state
    counts = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{n}.")}) for n in range(1, 5))
    found = next((name for name, (block, blocks) in RESNETS.items() if blocks == counts and block == "bottleneck"
                  and "layer1.0.conv3.weight" in state), None)
    args = original.config.get("arch", {}).get("args", {}) if original.config else {}
    named = args.get("backbone", DEFAULT_BACKBONE if original.config else found)
    if found is None:
        raise WaveUNetError(f"{path}: its ResNet has {list(counts)} blocks per stage, which is none of the original's "
                            f"bottleneck ResNets (resnet50, resnet101, resnet152)")
    if named != found:
        raise WaveUNetError(f"{path}: the config names backbone {named!r} but the weights are a {found}")
    return found


def config_of(original: OriginalCheckpoint, path: Path, *, name: str, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> UNet2dConfig | UNetResnetConfig:
    """Our config for the original's network, its sizes read from the weights."""
    arch, state = original.architecture, original.state
    dataset = (original.config.get("train_loader") or {}).get("type") if original.config else None
    if mean is None and std is None and dataset in DATASET_STATISTICS:
        mean, std = DATASET_STATISTICS[dataset]
    crop = ((original.config.get("train_loader") or {}).get("args") or {}).get("crop_size") if original.config else None
    tile = crop if isinstance(crop, int) and crop > 0 else 512
    try:
        if arch == "UNet":
            in_channels = _shape(state, "start_conv.0.weight", path, arch)[1]
            classes = _shape(state, "final_conv.weight", path, arch)[0]
            return UNet2dConfig(in_channels=in_channels, classes=classes, levels=4, features=64, padding="same",
                                norm="batch", bias=False, half_first=True, bottleneck_stages=2, pool_ceil=True,
                                merge="interpolate", skip_pooled=True, input_mean=mean, input_std=std,
                                output_size=tile, name=name)
        if "initial.0.weight" in state:
            raise WaveUNetError(f"{path}: its first conv is a 7x7 conv in front of the deep stem (the original's "
                                f"in_channels != 3 defect); that network cannot run, so it cannot be imported")
        in_channels = _shape(state, "initial.0.0.weight", path, arch)[1]
        classes = _shape(state, "conv7.weight", path, arch)[0]
        return UNetResnetConfig(in_channels=in_channels, classes=classes, encoder=_backbone(original, path),
                                deep_stem=True, dilated=True, input_mean=mean, input_std=std, output_size=tile,
                                name=name)
    except ValueError as error:
        raise WaveUNetError(f"{path}: {error}") from None


def import_segmentation_checkpoint(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                                   force: bool = False) -> nn.Module:
    """Convert a checkpoint of yassouali/pytorch-segmentation's ``UNet`` or ``UNetResnet`` into our model.

    Args:
        src: ``checkpoint-epoch<N>.pth`` or ``best_model.pth`` of its trainer, or a bare state dict.
        dst: where to write our checkpoint (:func:`waveunet.save_model`), or None.
        mean, std: the input standardisation the model was trained with; default: its dataset's
            (from the checkpoint's config), none for a dataset the original does not know.
        force: replace an existing ``dst``.

    Returns the model in eval mode; it computes what the original computes on standardised
    images, from [0, 1] images.
    """
    src = Path(src)
    if dst is not None:
        check_destination(dst, force)
    original = read_original_checkpoint(src)
    config = config_of(original, src, name=f"pytorch-segmentation-import:{src.stem}", mean=mean, std=std)
    model = model_from_config(config)
    load_translated(model, original.state, lambda key: original_key(original.architecture, key), src,
                    f"the original {original.architecture}")
    dataset = (original.config.get("train_loader") or {}).get("type") if original.config else None
    model.metadata = {"imported_from": src.name, "architecture": original.architecture, "epoch": original.epoch,
                      **({"dataset": dataset} if isinstance(dataset, str) else {})}
    if dst is not None:
        save_model(model, dst, metadata=model.metadata)
    return model


__all__ = ["import_segmentation_checkpoint", "read_original_checkpoint", "original_key", "config_of",
           "DATASET_STATISTICS", "OriginalCheckpoint"]
