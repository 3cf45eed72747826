"""The input/output windows of valid-convolution models, for training crops and validation.

A U-Net with valid convolutions maps an input window to a smaller output window centred in it
(572x572 -> 388x388 for Ronneberger et al.); the margin between them is the context. To train on
output windows that touch the image border, the missing context is mirrored, as in the paper's
overlap-tile strategy (:func:`waveunet.tiling.reflect_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import WaveUNetError
from ..tiling import reflect_crop


def as_size(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) from an int (square) or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


@dataclass(frozen=True)
class WindowShape:
    """A model's input window and the output window centred in it, each (height, width).

    For same-padding models the two are equal and the context is zero.
    """

    input: tuple[int, int]
    output: tuple[int, int]

    @classmethod
    def of(cls, input_size: int | Sequence[int], output_size: int | Sequence[int]) -> "WindowShape":
        shape = cls(as_size(input_size), as_size(output_size))
        for inside, outside in zip(shape.output, shape.input):
            if inside < 1 or outside < inside or (outside - inside) % 2:
                raise WaveUNetError(
                    f"an output window of {shape.output} cannot sit centred in an input window of {shape.input}"
                )
        return shape

    @property
    def context(self) -> tuple[int, int]:
        """Input samples beyond the output window on each side, (vertical, horizontal)."""
        return (self.input[0] - self.output[0]) // 2, (self.input[1] - self.output[1]) // 2

    def cut_input(self, image: torch.Tensor, top: int, left: int) -> torch.Tensor:
        """The model input [..., in_h, in_w] whose output window has its top-left at (top, left)."""
        above, beside = self.context
        return reflect_crop(image, (top - above, left - beside), self.input)

    def cut_output(self, field: torch.Tensor, top: int, left: int) -> torch.Tensor:
        """The part [..., out_h, out_w] of a mask or weight map under the output window at (top, left)."""
        return field[..., top : top + self.output[0], left : left + self.output[1]]

    def fits(self, height: int, width: int) -> bool:
        """Whether an output window lies inside a height x width image."""
        return self.output[0] <= height and self.output[1] <= width

    def random_window(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int]:
        """A uniformly drawn (top, left) of an output window inside a height x width image."""
        top = int(torch.randint(height - self.output[0] + 1, (), generator=generator))
        left = int(torch.randint(width - self.output[1] + 1, (), generator=generator))
        return top, left

    def covering_windows(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of output windows that cover a height x width image, row by row.

        Windows sit on a grid of the output size; the last one in each row and column is moved back
        to end at the border, so it overlaps its neighbour instead of leaving the image.
        """
        return [(top, left) for top in _grid(height, self.output[0]) for left in _grid(width, self.output[1])]


def _grid(size: int, step: int) -> list[int]:
    starts = list(range(0, size - step, step))
    return starts + [size - step]
