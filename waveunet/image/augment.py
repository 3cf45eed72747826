"""Data augmentation for segmentation, applied jointly so that image and mask stay aligned.

The U-Net paper trains on few images and relies on augmentation, above all on elastic deformation:
random displacement vectors on a coarse 3x3 grid, drawn with a 10 pixel standard deviation and
interpolated bicubically to a smooth per-pixel field. Every geometric transform moves the image
(bilinear), the mask (nearest, so every pixel keeps a valid class) and an optional weight map
(bilinear) by the same field; intensity jitter touches the image only. Outside the image the
deformation samples the mirrored image (``reflect``, as the crops do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Which augmentations to draw; each is applied with fresh random parameters per sample."""

    flip: bool = True  # mirror left-right with probability 1/2
    rotate90: bool = True  # rotate by 0, 90, 180 or 270 degrees
    elastic_std: float = 10.0  # pixels: std of the coarse displacements; 0 turns deformation off
    elastic_grid: int = 3  # control points per side of the coarse grid
    brightness: float = 0.1  # an offset drawn from U(-brightness, brightness)
    contrast: float = 0.1  # a gain drawn from U(1 - contrast, 1 + contrast)


def elastic_displacement(height: int, width: int, std: float, grid: int, generator: torch.Generator) -> torch.Tensor:
    """A smooth displacement field [2, height, width] in pixels, (down, right) components.

    Gaussian vectors on a grid x grid lattice spanning the image corners, upsampled bicubically.
    """
    coarse = torch.randn(1, 2, grid, grid, generator=generator) * std
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]


def warp(fields: torch.Tensor, displacement: torch.Tensor, mode: str) -> torch.Tensor:
    """fields [C, H, W] resampled at (y, x) + displacement[:, y, x]; mode "bilinear" or "nearest"."""
    height, width = fields.shape[-2:]
    rows = torch.arange(height, dtype=displacement.dtype).view(-1, 1) + displacement[0]
    cols = torch.arange(width, dtype=displacement.dtype).view(1, -1) + displacement[1]
    # grid_sample wants (x, y) in [-1, 1], corners at pixel centres with align_corners=True
    grid = torch.stack([2 * cols / max(width - 1, 1) - 1, 2 * rows / max(height - 1, 1) - 1], dim=-1)
    moved = F.grid_sample(fields[None], grid[None], mode=mode, padding_mode="reflection", align_corners=True)
    return moved[0]


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def augment(
    image: torch.Tensor,
    mask: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One random draw of the augmentations, applied to all inputs alike.

    image [C, H, W] float in [0, 1], mask [H, W] int64, weight [H, W] float or None ->
    the same, transformed (a 90-degree rotation swaps H and W). The image stays in [0, 1].
    """
    mask = mask.unsqueeze(0)
    weight = None if weight is None else weight.unsqueeze(0)
    turns = int(torch.randint(4, (), generator=generator)) if config.rotate90 else 0
    mirror = bool(torch.rand((), generator=generator) < 0.5) if config.flip else False

    def move(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, turns, dims=(-2, -1))
        return x.flip(-1) if mirror else x

    image, mask = move(image), move(mask)
    weight = None if weight is None else move(weight)

    if config.elastic_std > 0:
        height, width = image.shape[-2:]
        field = elastic_displacement(height, width, config.elastic_std, config.elastic_grid, generator)
        image = warp(image, field, "bilinear")
        mask = warp(mask.to(field.dtype), field, "nearest").round().long()
        weight = None if weight is None else warp(weight, field, "bilinear")

    if config.brightness or config.contrast:
        gain = _uniform(1 - config.contrast, 1 + config.contrast, generator)
        offset = _uniform(-config.brightness, config.brightness, generator)
        image = (image * gain + offset).clamp(0.0, 1.0)

    return image.contiguous(), mask[0].contiguous(), None if weight is None else weight[0].contiguous()
