"""Image and mask files -> tensors, the folder dataset, and its train/validation split.

A segmentation folder holds ``images/<name>.<ext>`` and ``masks/<name>.<ext>``: PNG, TIFF or JPEG,
read through Pillow, pairs matched by file stem. Images become float32 tensors ``[channels, H, W]``
in [0, 1]; masks become int64 class-index tensors ``[H, W]``. A mask is either a class-index image
(grey or palette PNG whose values are the classes 0..num_classes-1) or a two-level 0/255 image
(mapped to classes 0 and 1), which is how the ISBI 2012 labels are stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import WaveUNetError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")

#: ITU-R BT.601 luma weights: the same grey that Pillow's ``convert("L")`` gives.
LUMA = (0.299, 0.587, 0.114)

_GREY_MODES = {"1", "L", "LA", "I", "F"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


@dataclass(frozen=True)
class LabelledImage:
    """One image with its mask, named by the file stem they share."""

    name: str
    image: torch.Tensor  # [channels, H, W] float32 in [0, 1]
    mask: torch.Tensor  # [H, W] int64 class indices
    image_path: Path
    mask_path: Path


def _open(path: Path) -> Image.Image:
    """The first and only frame of an image file, decoded; unreadable files raise WaveUNetError."""
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            opened.load()
            picture = opened.copy()
    except FileNotFoundError:
        raise WaveUNetError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise WaveUNetError(f"{path}: cannot read the image ({reason})") from None
    if frames > 1:
        raise WaveUNetError(f"{path}: holds a stack of {frames} frames; give one image per file")
    return picture


def _unit_range(picture: Image.Image, path: Path) -> np.ndarray:
    """Pixel values scaled to [0, 1]: [H, W] for grey modes, [H, W, 3] for colour ones."""
    mode = picture.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(picture, dtype=np.float32) / 65535.0
    if mode in ("I", "F"):
        # 32-bit modes carry no scale of their own: accept what is unambiguous.
        values = np.asarray(picture, dtype=np.float64)
        top = 65535.0 if mode == "I" else 1.0
        if values.size and (values.min() < 0 or values.max() > top):
            raise WaveUNetError(
                f"{path}: {mode}-mode pixel values span {values.min():g}..{values.max():g}, outside 0..{top:g}"
            )
        return (values / top).astype(np.float32)
    grey = mode in _GREY_MODES
    return np.asarray(picture.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0


def convert_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey [1, H, W] <-> colour [3, H, W]: grey is repeated, colour is reduced to BT.601 luma."""
    if image.shape[0] == channels:
        return image
    if channels == 3 and image.shape[0] == 1:
        return image.expand(3, -1, -1).contiguous()
    if channels == 1 and image.shape[0] == 3:
        luma = torch.tensor(LUMA, dtype=image.dtype).view(3, 1, 1)
        return (image * luma).sum(dim=0, keepdim=True)
    raise ValueError(f"cannot convert {image.shape[0]} channels to {channels}")


def read_image(path: str | os.PathLike, channels: int | None = None) -> torch.Tensor:
    """An image file as float32 [channels, H, W] in [0, 1].

    Grey images (8- or 16-bit) give one channel, colour ones three (alpha is dropped). ``channels``
    (1 or 3) converts: grey is repeated, colour becomes BT.601 luma.
    """
    path = Path(path)
    if channels not in (None, 1, 3):
        raise WaveUNetError(f"{path}: channels must be 1 or 3, not {channels}")
    values = _unit_range(_open(path), path)
    image = torch.from_numpy(values[None] if values.ndim == 2 else values.transpose(2, 0, 1).copy())
    return image if channels is None else convert_channels(image, channels)


def _listing(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


def read_mask(path: str | os.PathLike, num_classes: int = 2) -> torch.Tensor:
    """A mask file as int64 class indices [H, W].

    Values 0..num_classes-1 are taken as class indices; a mask of only 0 and 255 is two-level and
    maps to classes 0 and 1. Anything else raises WaveUNetError naming the file and the values.
    """
    path = Path(path)
    picture = _open(path)
    if picture.mode in ("RGB", "RGBA"):
        # A grey mask saved as RGB is still a class-index mask; real colour labels are not.
        rgb = np.asarray(picture.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise WaveUNetError(f"{path}: a colour mask; save class indices as a grey or palette PNG")
        labels = rgb[..., 0].astype(np.int64)
    elif picture.mode in ("1", "L", "P") or picture.mode in _SIXTEEN_BIT_MODES or picture.mode == "I":
        labels = np.asarray(picture).astype(np.int64)
    else:
        raise WaveUNetError(f"{path}: a mask must be a grey or palette image of class indices, not mode {picture.mode}")
    values = np.unique(labels)
    if values[0] >= 0 and values[-1] < num_classes:
        return torch.from_numpy(labels)
    if set(values.tolist()) <= {0, 255}:
        return torch.from_numpy((labels == 255).astype(np.int64))
    raise WaveUNetError(
        f"{path}: mask values {_listing(values)} are neither class indices 0..{num_classes - 1} nor two-level 0/255"
    )


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            raise WaveUNetError(f"{path}: two files named {path.stem!r} ({found[path.stem].name} and {path.name})")
        found[path.stem] = path
    return found


def find_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, image path, mask path) for every image, sorted by name; every image needs its mask."""
    images, masks = _images_by_stem(Path(images_dir)), _images_by_stem(Path(masks_dir))
    if not images:
        raise WaveUNetError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for name, path in images.items():
        if name not in masks:
            raise WaveUNetError(f"{path}: image without a mask ({Path(masks_dir) / name}.*)")
    for name, path in masks.items():
        if name not in images:
            raise WaveUNetError(f"{path}: mask without an image ({Path(images_dir) / name}.*)")
    return [(name, images[name], masks[name]) for name in sorted(images)]


class SegmentationFolder(torch.utils.data.Dataset):
    """The labelled images of ``root/images`` and ``root/masks``, read and checked up front.

    Reading everything at construction makes a bad file fail before training starts; the ISBI
    slices take 25 MB as float32. Items are :class:`LabelledImage` (image [channels, H, W], mask [H, W]).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        channels: int | None = None,
        num_classes: int = 2,
        names: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.num_classes = num_classes
        pairs = find_pairs(self.root / "images", self.root / "masks")
        if names is not None:
            known = {name for name, _, _ in pairs}
            for name in names:
                if name not in known:
                    raise WaveUNetError(f"{self.root}: no image named {name!r}")
            wanted = set(names)
            pairs = [pair for pair in pairs if pair[0] in wanted]
        self.examples = [self._read(name, image, mask, channels) for name, image, mask in pairs]
        self.channels = self._common_channels() if self.examples else channels

    def _read(self, name: str, image_path: Path, mask_path: Path, channels: int | None) -> LabelledImage:
        image = read_image(image_path, channels)
        mask = read_mask(mask_path, self.num_classes)
        if mask.shape != image.shape[1:]:
            raise WaveUNetError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[2]}x{image.shape[1]} (width x height)"
            )
        return LabelledImage(name, image, mask, image_path, mask_path)

    def _common_channels(self) -> int:
        first = self.examples[0]
        for example in self.examples[1:]:
            if example.image.shape[0] != first.image.shape[0]:
                raise WaveUNetError(
                    f"{example.image_path}: {example.image.shape[0]} channels but {first.image_path.name} has "
                    f"{first.image.shape[0]}; set channels to convert them"
                )
        return first.image.shape[0]

    @property
    def names(self) -> list[str]:
        return [example.name for example in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> LabelledImage:
        return self.examples[index]


def split_names(
    names: Sequence[str],
    *,
    valid_fraction: float = 0.125,
    seed: int = 0,
    valid_names: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(train names, validation names), each in the order of ``names``.

    Explicit ``valid_names`` win; otherwise a seeded draw of ``round(valid_fraction * len(names))``
    names (at least one when the fraction is positive, never all) goes to validation.
    """
    names = list(names)
    if valid_names is not None:
        unknown = sorted(set(valid_names) - set(names))
        if unknown:
            raise WaveUNetError(f"validation names not in the dataset: {', '.join(unknown)}")
        chosen = set(valid_names)
    else:
        if not 0.0 <= valid_fraction < 1.0:
            raise WaveUNetError(f"valid_fraction must lie in [0, 1), not {valid_fraction}")
        count = round(valid_fraction * len(names))
        if valid_fraction > 0:
            count = min(max(count, 1), len(names) - 1)
        order = np.random.default_rng(seed).permutation(len(names))
        chosen = {names[i] for i in order[:count]}
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]


@dataclass
class ImageDataConfig:
    """Where the labelled images are and how they split into training and validation."""

    root: str = "data/isbi2012-em/train"
    channels: int | None = None  # None keeps each file's own (grey 1, colour 3)
    num_classes: int = 2
    valid_fraction: float = 0.125  # 3 of the 24 ISBI slices
    valid_names: list[str] | None = None  # an explicit validation set overrides the fraction
    seed: int = 0

    def load(self) -> tuple[SegmentationFolder, SegmentationFolder]:
        """(training folder, validation folder), read and checked."""
        every = find_pairs(Path(self.root) / "images", Path(self.root) / "masks")
        train, valid = split_names(
            [name for name, _, _ in every],
            valid_fraction=self.valid_fraction,
            seed=self.seed,
            valid_names=self.valid_names,
        )
        options = dict(channels=self.channels, num_classes=self.num_classes)
        return SegmentationFolder(self.root, names=train, **options), SegmentationFolder(self.root, names=valid, **options)
