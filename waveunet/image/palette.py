"""Class colours: for masks written as palette PNGs, overlays, and TensorBoard examples.

A model trained with a ``[data.classes]`` table keeps its names and colours in its checkpoint
(``metadata["classes"]``: name -> [r, g, b], in class order); other models get :data:`PALETTE`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

#: colours of classes 0, 1, ... (RGB) without a class table; class k > 9 reuses colour k mod 10
PALETTE = ((228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
           (255, 255, 51), (166, 86, 40), (247, 129, 191), (153, 153, 153), (0, 0, 0))


def class_colours(classes: int, table: Mapping[str, Sequence[int]] | None = None) -> list[tuple[int, int, int]]:
    """The colour of each of ``classes`` classes: the table's (name -> colour, in class order), else :data:`PALETTE`'s."""
    if table:
        colours = [tuple(int(v) for v in colour) for colour in table.values()]
        if len(colours) != classes:
            raise ValueError(f"a table of {len(colours)} class colours for {classes} classes")
        return colours
    return [PALETTE[k % len(PALETTE)] for k in range(classes)]


def model_colours(model) -> list[tuple[int, int, int]]:
    """The class colours of a model: its checkpoint's class table, else the default palette."""
    return class_colours(model.config.classes, getattr(model, "metadata", {}).get("classes"))


def palette_mask(labels: np.ndarray, colours: Sequence[Sequence[int]]) -> Image.Image:
    """Class indices [H, W] (< 256) as a palette ("P") image: pixel values are the class indices,
    shown in the class colours."""
    picture = Image.fromarray(labels.astype(np.uint8))  # an "L" image; the palette makes it "P"
    flat = [int(v) for colour in colours for v in colour]
    picture.putpalette(flat + [0] * (768 - len(flat)))
    return picture


def colourise(labels: torch.Tensor, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """Class indices [H, W] -> uint8 RGB [H, W, 3] in the class colours (negative labels: black)."""
    table = np.asarray(list(colours) + [(0, 0, 0)], dtype=np.uint8)  # index -1 (ignored pixels) is black
    index = labels.numpy().astype(np.int64)
    return table[np.where(index < 0, len(colours), index)]


__all__ = ["PALETTE", "class_colours", "model_colours", "palette_mask", "colourise"]
