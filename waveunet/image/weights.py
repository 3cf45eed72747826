"""The U-Net paper's per-pixel loss weights (Ronneberger et al., 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies; the second term makes the network learn the thin background
(membrane) lines that separate touching cells: d1 and d2 are the distances to the nearest and the
second-nearest cell. Cells are the connected regions (4-connectivity) of the foreground class. The
border term applies to background pixels only: inside a cell the distance to the nearest cell is
zero and the pixel separates nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

#: Border terms below this are dropped, so that distances need only be measured near each cell.
TRUNCATION = 1e-6


@dataclass
class WeightMapConfig:
    """Parameters of the paper's weight map; the paper's values are the defaults."""

    w0: float = 10.0
    sigma: float = 5.0  # pixels
    foreground: int = 1  # the class whose connected regions are the cells


def class_balance(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c [H, W]: each pixel weighted by the inverse frequency of its class in this mask.

    Normalised so the weights average 1 over the pixels: a class covering a fraction f_k of the mask
    gets 1 / (K f_k), with K the number of classes present.
    """
    counts = torch.bincount(mask.flatten(), minlength=num_classes).double()
    present = int((counts > 0).sum())
    per_class = torch.where(counts > 0, mask.numel() / (present * counts.clamp(min=1)), 0.0)
    return per_class.float()[mask]


def nearest_two_distances(cells: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2) [H, W]: Euclidean distances to the nearest and second-nearest labelled cell.

    ``cells`` labels the cells 1, 2, ... (0 elsewhere). Distances beyond ``reach`` are reported as
    infinite: each cell's distance transform is taken only over its bounding box grown by ``reach``,
    which is exact inside that box because the whole cell lies in it.
    """
    d1 = np.full(cells.shape, np.inf)
    d2 = np.full(cells.shape, np.inf)
    margin = math.ceil(reach)
    for label, box in enumerate(ndimage.find_objects(cells), start=1):
        grown = tuple(slice(max(s.start - margin, 0), s.stop + margin) for s in box)
        distance = ndimage.distance_transform_edt(cells[grown] != label)
        distance[distance > reach] = np.inf
        near, second = d1[grown], d2[grown]
        d2[grown] = np.minimum(second, np.maximum(near, distance))
        d1[grown] = np.minimum(near, distance)
    return d1, d2


def border_weights(mask: torch.Tensor, w0: float = 10.0, sigma: float = 5.0, foreground: int = 1) -> torch.Tensor:
    """The border term [H, W]: w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) on background pixels, else 0."""
    labels = mask.numpy()
    cells, _ = ndimage.label(labels == foreground)
    # (d1 + d2) >= d2 > reach leaves a term under TRUNCATION, so farther distances need not be exact.
    reach = sigma * math.sqrt(2.0 * math.log(max(w0, TRUNCATION) / TRUNCATION))
    d1, d2 = nearest_two_distances(cells, reach)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    term[labels == foreground] = 0.0
    return torch.from_numpy(term.astype(np.float32))


def unet_weight_map(mask: torch.Tensor, num_classes: int, config: WeightMapConfig | None = None) -> torch.Tensor:
    """w [H, W] for a class-index mask [H, W]: class balance plus the border term."""
    config = config or WeightMapConfig()
    return class_balance(mask, num_classes) + border_weights(mask, config.w0, config.sigma, config.foreground)
