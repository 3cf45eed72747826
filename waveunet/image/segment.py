"""Segmenting images of any size with a trained U-Net: the paper's overlap-tile strategy.

A valid-convolution U-Net predicts only the centre of its input. :func:`segment` cuts the image
into tiles whose output windows abut, gives each tile the context its output needs (mirrored,
``reflect``, where a tile reaches past the border) and stitches the outputs
(:func:`waveunet.tiling.tiled_forward`). With tile hops on the network's pooling grid
(``model.length_step``) the result equals one pass over the whole mirror-padded image, while
memory stays that of one batch of tiles.

A padded (same-convolution) U-Net takes any size: an image within one tile goes through in one
pass; larger ones are tiled with overlapping, cross-faded tiles. The U-Nets with a ResNet encoder
see far (hundreds of pixels), and the zero padding at a tile's border would show as seams: their
tiles carry ``model.tile_margin`` pixels of real (or, at the image border, mirrored) context on
every side, of which only the centre is kept, lie on the encoder's stride grid, and overlap by the
margin, cross-faded. Away from the image border the result then equals one pass over the whole
image up to a small error (``tests/test_unet_resnet.py`` bounds it).

:func:`segment_files` is the command-line side: each image file becomes ``DIR/<name>.png``, a
palette PNG whose pixel values are the class indices (0, 1, ...) and whose palette holds the class
colours (the checkpoint's ``[data.classes]`` table, else a default palette), of the image's size;
optionally also ``DIR/<name>.overlay.png``, the image tinted by class.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..atomic import AtomicGroup, check_destination, make_folders, remove_empty_folders
from ..errors import WaveUNetError
from ..tiling import Tiling, exact_tiling, faded_tiling, tiled_forward
from .data import read_image
from .palette import PALETTE, colourise, model_colours, palette_mask

OVERLAY_OPACITY = 0.4


def _round_up(n: int, step: int) -> int:
    return step * max(1, math.ceil(n / step))


def margin_tiling(tile: int, margin: int, step: int = 1) -> Tiling:
    """Tiles for a size-keeping network with a wide receptive field: ``tile`` output pixels kept
    per side (rounded up to a multiple of ``step``), ``margin`` pixels of context around them
    (likewise), neighbours overlapping by the margin and cross-faded.

    >>> margin_tiling(500, 64, step=32)
    Tiling(input=(640, 640), output=(512, 512), hop=(448, 448), fade=True)
    """
    kept, margin = _round_up(tile, step), _round_up(margin, step)
    hop = kept - margin if kept > margin else kept
    return Tiling((kept + 2 * margin,) * 2, (kept,) * 2, (hop,) * 2, fade=True)


#: the least default tile side of networks tiled with context margins: smaller tiles would spend
#: most of their pixels on context
MARGIN_TILE = 512


def default_tile(model: nn.Module) -> int:
    """Output pixels per tile side when none is asked for: the training tile, and for networks
    with a ``tile_margin`` at least :data:`MARGIN_TILE`."""
    if model.keeps_size and getattr(model, "tile_margin", 0):
        return max(model.output_length, MARGIN_TILE)
    return model.output_length


def image_tiling(model: nn.Module, tile: int | None = None) -> Tiling:
    """Tiles of about ``tile`` output pixels per side (default: :func:`default_tile`).

    Valid-convolution networks get abutting tiles on their pooling grid (exact); padded ones get
    half-overlapping, cross-faded tiles; networks with a ``tile_margin`` (the U-Nets with a ResNet
    encoder) get :func:`margin_tiling` on their encoder's stride grid.
    """
    tile = tile or default_tile(model)
    if not model.keeps_size:
        return exact_tiling(model, tile, dims=2)
    if getattr(model, "tile_margin", 0):
        return margin_tiling(tile, model.tile_margin, getattr(model, "output_stride", 1))
    return faded_tiling(model, tile, dims=2)


class _KeepCentre(nn.Module):
    """``model`` with its output cropped by ``margin`` pixels on every side: a size-keeping network
    seen as one that predicts the centre of its input, as :func:`~waveunet.tiling.tiled_forward` wants."""

    def __init__(self, model: nn.Module, margin: int):
        super().__init__()
        self.model, self.margin = model, margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin
        return self.model(x)[..., m:x.shape[-2] - m, m:x.shape[-1] - m]


def segment(model: nn.Module, image: torch.Tensor, *, tile: int | None = None, batch_size: int = 1,
            progress=None) -> torch.Tensor:
    """Class scores (logits) [classes, H, W] for an image [channels, H, W] of any size.

    Args:
        model: a :class:`~waveunet.models.unet2d.UNet2d` (used in eval mode, on its own device).
        image: [channels, H, W] float, channels as the model's ``in_channels``.
        tile: output pixels per tile side (default: :func:`default_tile`); memory grows with its square.
        batch_size: tiles per forward pass.
        progress: optional ``progress(done, total)`` callback, in tiles.

    Returns:
        [classes, H, W] float32 on ``image``'s device; ``argmax(0)`` is the segmentation.
    """
    if image.dim() != 3:
        raise ValueError(f"expected an image [channels, H, W], got shape {tuple(image.shape)}")
    if image.shape[0] != model.config.in_channels:
        raise ValueError(f"the model takes {model.config.in_channels} channel(s), the image has {image.shape[0]}")
    was_training = model.training
    model.eval()
    try:
        height, width = image.shape[-2:]
        side = tile or default_tile(model)
        if model.keeps_size and height <= side and width <= side:
            with torch.inference_mode():
                device = next(model.parameters()).device
                scores = model(image[None].to(device))[0].float().to(image.device)
            if progress is not None:
                progress(1, 1)
            return scores
        tiling = image_tiling(model, tile)
        network = _KeepCentre(model, tiling.context[0]) if model.keeps_size and any(tiling.context) else model
        return tiled_forward(network, image, tiling, padding="reflect", batch_size=batch_size, progress=progress)
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------- files


def overlay(image: torch.Tensor, labels: torch.Tensor, opacity: float = OVERLAY_OPACITY,
            colours: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """The image [channels, H, W] in [0, 1] tinted by the colour of each pixel's class -> uint8 [H, W, 3].

    ``colours``: one (r, g, b) per class (default: :data:`~waveunet.image.palette.PALETTE`).
    """
    grey_or_rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    base = grey_or_rgb.permute(1, 2, 0).numpy().astype(np.float32)
    colours = colours or [PALETTE[k % len(PALETTE)] for k in range(int(labels.max()) + 1)]
    tint = colourise(labels, colours).astype(np.float32) / 255.0
    return np.round(255.0 * ((1 - opacity) * base + opacity * tint)).clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SegmentationOutputs:
    """Where the results of one image go."""

    mask: Path
    overlay: Path | None

    @classmethod
    def of(cls, image: Path, folder: Path, with_overlay: bool) -> "SegmentationOutputs":
        return cls(folder / f"{image.stem}.png", folder / f"{image.stem}.overlay.png" if with_overlay else None)

    @property
    def paths(self) -> list[Path]:
        return [self.mask] + ([self.overlay] if self.overlay else [])


def _write_pngs(pictures: Sequence[tuple[Path, Image.Image]], force: bool) -> None:
    """Write every (path, picture) as PNG, all of them or none (one :class:`AtomicGroup`)."""
    current = pictures[0][0]
    try:
        with AtomicGroup(force=force) as group:
            for current, picture in pictures:
                picture.save(group.add(current, ".png"), format="PNG")
    except OSError as error:
        raise WaveUNetError(f"{current}: cannot write ({error.strerror or error})") from None


def segment_file(model: nn.Module, path: str | os.PathLike, outputs: SegmentationOutputs, *, tile: int | None = None,
                 force: bool = False, progress=None) -> SegmentationOutputs:
    """Segment one image file and write its class-index palette mask (and overlay); returns where they went."""
    path = Path(path)
    for destination in outputs.paths:
        check_destination(destination, force)
    classes = model.config.classes
    if classes > 256:
        raise WaveUNetError(f"{path}: a {classes}-class mask does not fit an 8-bit PNG")
    colours = model_colours(model)
    image = read_image(path, channels=model.config.in_channels)
    labels = segment(model, image, tile=tile, progress=progress).argmax(0)
    pictures = [(outputs.mask, palette_mask(labels.numpy(), colours))]
    if outputs.overlay is not None:
        pictures.append((outputs.overlay, Image.fromarray(overlay(image, labels, colours=colours))))
    _write_pngs(pictures, force)
    return outputs


def segment_files(model: nn.Module, paths: Sequence[str | os.PathLike], folder: str | os.PathLike, *,
                  with_overlay: bool = False, tile: int | None = None, force: bool = False,
                  progress: bool = True) -> list[WaveUNetError]:
    """Segment each image into ``folder``; a bad input is reported and skipped, the others go on.

    Returns the errors, one per image that failed (empty if all succeeded).
    """
    folder = Path(folder)
    errors: list[WaveUNetError] = []
    claimed: dict[Path, Path] = {}  # output mask -> the input that writes it
    with _output_folder(folder), tqdm(total=len(paths), unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for path in map(Path, paths):
            bar.set_description(path.name)
            outputs = SegmentationOutputs.of(path, folder, with_overlay)
            try:
                if outputs.mask in claimed:
                    raise WaveUNetError(f"{path}: would write {outputs.mask} again (already written for "
                                        f"{claimed[outputs.mask]}); rename one of the images")
                claimed[outputs.mask] = path
                segment_file(model, path, outputs, tile=tile, force=force,
                             progress=lambda done, total: bar.set_postfix_str(f"tile {done}/{total}"))
            except WaveUNetError as error:
                errors.append(error)
                tqdm.write(f"Error: {error}", file=sys.stderr)
            bar.update()
    return errors


@contextlib.contextmanager
def _output_folder(folder: Path):
    """Create ``folder`` (and missing parents); on leaving, remove again those of them that were
    created here and are still empty, so that a run that wrote nothing leaves nothing behind."""
    created = make_folders(folder)
    try:
        yield folder
    finally:
        remove_empty_folders(created)
