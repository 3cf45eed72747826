"""Image and mask files -> tensors, the folder dataset, and its train/validation split.

A segmentation folder holds ``images/<name>.<ext>`` and ``masks/<name>.<ext>``: PNG, TIFF or JPEG,
read through Pillow, pairs matched by file stem. Images become float32 tensors ``[channels, H, W]``
in [0, 1]; masks become int64 class-index tensors ``[H, W]``. A mask is either a class-index image
(grey or palette PNG whose values are the classes 0..num_classes-1) or a two-level 0/255 image
(mapped to classes 0 and 1), which is how the ISBI 2012 labels are stored; or, with a table of
class colours (a recipe's ``[data.classes]``: name -> colour, in class order), an RGB, palette or
grey image whose every pixel has one of those colours (grey value v is the colour (v, v, v)).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

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


Colour = tuple[int, int, int]
#: class names: letters, digits, ``_``, ``-`` and ``.`` (they become metric keys and TensorBoard tags)
CLASS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_colour(value: Any, what: str = "colour") -> Colour:
    """``[r, g, b]`` (0..255) or ``"#rrggbb"`` -> ``(r, g, b)``; ValueError naming ``what`` otherwise."""
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
    if (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)):
        return int(value[0]), int(value[1]), int(value[2])
    raise ValueError(f"{what} must be [r, g, b] with values 0..255 or \"#rrggbb\", not {value!r}")


def hex_colour(colour: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in colour)


def class_table(classes: dict[str, Any]) -> dict[str, Colour]:
    """A ``[data.classes]`` table checked: at least two classes, plain names, distinct colours."""
    if not isinstance(classes, dict) or len(classes) < 2:
        raise ValueError(f"data.classes must name at least two classes (name = colour), got {classes!r}")
    table = {}
    for name, value in classes.items():
        if not CLASS_NAME.fullmatch(str(name)):
            raise ValueError(f"data.classes: class name {name!r} may hold only letters, digits, _, - and .")
        table[str(name)] = parse_colour(value, f"data.classes.{name}")
    seen: dict[Colour, str] = {}
    for name, colour in table.items():
        if colour in seen:
            raise ValueError(f"data.classes: {seen[colour]} and {name} have the same colour {hex_colour(colour)}")
        seen[colour] = name
    return table


def read_colour_mask(path: str | os.PathLike, colours: dict[str, Colour]) -> torch.Tensor:
    """A colour mask as int64 class indices [H, W]: class k is the k-th colour of ``colours``.

    RGB(A), palette and grey images are read as RGB (grey v as (v, v, v); alpha is dropped). A
    pixel of any other colour raises WaveUNetError naming the file, the colour, where it first
    occurs and how many pixels have it.
    """
    path = Path(path)
    picture = _open(path)
    if picture.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA"):
        raise WaveUNetError(f"{path}: a colour mask must be an 8-bit RGB, palette or grey image, not mode {picture.mode}")
    rgb = np.asarray(picture.convert("RGB"), dtype=np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    present, inverse = np.unique(codes, return_inverse=True)
    index = {(c[0] << 16) | (c[1] << 8) | c[2]: k for k, c in enumerate(colours.values())}
    lookup = np.array([index.get(int(code), -1) for code in present])
    labels = lookup[inverse.reshape(codes.shape)]
    if (labels < 0).any():
        unknown = present[lookup < 0]
        first = int(unknown[0])
        y, x = (int(v[0]) for v in np.nonzero(codes == first))
        colour = ((first >> 16) & 255, (first >> 8) & 255, first & 255)
        others = f" (and {len(unknown) - 1} other unknown colours)" if len(unknown) > 1 else ""
        known = ", ".join(f"{name} {hex_colour(c)}" for name, c in colours.items())
        raise WaveUNetError(f"{path}: colour {hex_colour(colour)} {list(colour)} (first at x={x}, y={y}; "
                            f"{int((codes == first).sum())} pixels){others} is none of the classes ({known})")
    return torch.from_numpy(labels)


def read_mask(path: str | os.PathLike, num_classes: int = 2, colours: dict[str, Colour] | None = None) -> torch.Tensor:
    """A mask file as int64 class indices [H, W].

    Values 0..num_classes-1 are taken as class indices; a mask of only 0 and 255 is two-level and
    maps to classes 0 and 1. Anything else raises WaveUNetError naming the file and the values.
    With ``colours`` (name -> colour, in class order) the mask is read by colour instead
    (:func:`read_colour_mask`).
    """
    if colours is not None:
        return read_colour_mask(path, colours)
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
        colours: dict[str, Colour] | None = None,
    ):
        self.root = Path(root)
        self.num_classes = num_classes
        self.colours = colours
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
        mask = read_mask(mask_path, self.num_classes, self.colours)
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
    """Where the labelled images are, how they split into training and validation, and the classes.

    ``classes`` (a recipe's ``[data.classes]`` table, ``name = [r, g, b]`` or ``"#rrggbb"``, in
    class order) names the classes and gives their colours: masks are then read by colour, and
    metrics, checkpoints and ``image segment`` use the names and colours. Without it masks hold
    class indices and the classes are called 0, 1, ...; ``num_classes`` defaults to the table's
    length, else 2.
    """

    root: str = "data/isbi2012-em/train"
    channels: int | None = None  # None keeps each file's own (grey 1, colour 3)
    num_classes: int | None = None
    valid_fraction: float = 0.125  # 3 of the 24 ISBI slices
    valid_names: list[str] | None = None  # an explicit validation set overrides the fraction
    seed: int = 0
    classes: dict[str, Any] | None = None

    def __post_init__(self):
        if self.classes is not None:
            self.classes = {name: list(colour) for name, colour in class_table(self.classes).items()}
            if self.num_classes is None:
                self.num_classes = len(self.classes)
            elif self.num_classes != len(self.classes):
                raise ValueError(f"data.num_classes = {self.num_classes} but data.classes names {len(self.classes)}")
        elif self.num_classes is None:
            self.num_classes = 2
        if self.num_classes < 2:
            raise ValueError(f"data.num_classes must be at least 2, got {self.num_classes}")

    @property
    def colours(self) -> dict[str, Colour] | None:
        """name -> (r, g, b) in class order, or None for class-index masks."""
        return None if self.classes is None else {name: tuple(colour) for name, colour in self.classes.items()}

    @property
    def class_names(self) -> list[str]:
        """The classes' names: the table's, else "0", "1", ..."""
        return list(self.classes) if self.classes is not None else [str(k) for k in range(self.num_classes)]

    def load(self) -> tuple[SegmentationFolder, SegmentationFolder]:
        """(training folder, validation folder), read and checked."""
        every = find_pairs(Path(self.root) / "images", Path(self.root) / "masks")
        train, valid = split_names(
            [name for name, _, _ in every],
            valid_fraction=self.valid_fraction,
            seed=self.seed,
            valid_names=self.valid_names,
        )
        options = dict(channels=self.channels, num_classes=self.num_classes, colours=self.colours)
        return SegmentationFolder(self.root, names=train, **options), SegmentationFolder(self.root, names=valid, **options)
