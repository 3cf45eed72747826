"""Training and validation examples for a segmentation model with a given window shape.

An example is ``(image [C, in_h, in_w], mask [out_h, out_w])``: the model input, mirror-padded
where it leaves the image (float32), and the int64 labels under the model's output window. When
weight maps are asked for it is ``(image, mask, weight [out_h, out_w])``, the paper's per-pixel
loss weights, computed once per image on the whole mask so that cells cut by the window keep their
borders. Batches therefore unpack as ``images, *targets = batch``. For same-padding models the input
and output windows are equal.

As for audio (:mod:`waveunet.data.sampling`), training example ``n`` is drawn from a generator
seeded with ``(seed, n)`` alone, and ``n`` runs over the whole training stream, so that
:class:`~waveunet.data.sampling.StreamSampler` makes epochs, workers and resumption reproducible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import WaveUNetError
from .augment import AugmentConfig, augment
from .data import LabelledImage
from .weights import WeightMapConfig, unet_weight_map
from .windows import WindowShape

#: Mask value of pixels that are not to be scored; the default ``ignore_index`` of torch's cross-entropy.
IGNORE_INDEX = -100


def _weight_maps(images: Sequence[LabelledImage], num_classes: int, config: WeightMapConfig | None) -> list:
    return [None if config is None else unet_weight_map(example.mask, num_classes, config) for example in images]


def _check_fit(images: Sequence[LabelledImage], shape: WindowShape, transposed: bool) -> None:
    for example in images:
        height, width = example.mask.shape
        if not shape.fits(height, width) or (transposed and not shape.fits(width, height)):
            raise WaveUNetError(
                f"{example.image_path}: {width}x{height} image is smaller than the model's "
                f"{shape.output[1]}x{shape.output[0]} output window (width x height)"
            )


def _example(image: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    return (image, mask) if weight is None else (image, mask, weight)


class RandomCrops(torch.utils.data.Dataset):
    """Augmented images cut at random output windows.

    Example n takes image n mod len(images), so every image is seen equally often, and draws its
    augmentation and window from a generator seeded with (seed, n). ``len()`` is ``epoch_size``,
    but any n >= 0 is valid.
    """

    def __init__(
        self,
        images: Sequence[LabelledImage],
        shape: WindowShape,
        *,
        epoch_size: int,
        num_classes: int = 2,
        augmentation: AugmentConfig | None = None,
        weight_map: WeightMapConfig | None = None,
        seed: int = 0,
    ):
        if not images:
            raise WaveUNetError("no training images")
        self.images, self.shape, self.epoch_size = list(images), shape, int(epoch_size)
        self.augmentation, self.seed = augmentation, int(seed)
        # a quarter turn swaps height and width, so then both orientations must fit
        _check_fit(self.images, shape, transposed=augmentation is not None and augmentation.rotate90)
        self.weights = _weight_maps(self.images, num_classes, weight_map)

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, n: int) -> tuple[torch.Tensor, ...]:
        if n < 0:
            raise IndexError(n)
        generator = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, int(n)]).integers(2**63)))
        example = self.images[n % len(self.images)]
        image, mask, weight = example.image, example.mask, self.weights[n % len(self.images)]
        if self.augmentation is not None:
            image, mask, weight = augment(image, mask, self.augmentation, generator, weight)
        top, left = self.shape.random_window(*mask.shape, generator)
        cut = self.shape.cut_output
        return _example(
            self.shape.cut_input(image, top, left), cut(mask, top, left), None if weight is None else cut(weight, top, left)
        )


class ValidationWindows(torch.utils.data.Dataset):
    """Fixed output windows covering every validation image, each pixel scored exactly once.

    Windows follow :meth:`WindowShape.covering_windows`; where a window overlaps one before it,
    those mask pixels are set to :data:`IGNORE_INDEX` (and their weights to 0), so summing over the
    windows counts every image pixel once. No augmentation.
    """

    def __init__(
        self,
        images: Sequence[LabelledImage],
        shape: WindowShape,
        *,
        num_classes: int = 2,
        weight_map: WeightMapConfig | None = None,
    ):
        self.images, self.shape = list(images), shape
        _check_fit(self.images, shape, transposed=False)
        self.weights = _weight_maps(self.images, num_classes, weight_map)
        self.windows = [
            (i, top, left) for i, example in enumerate(self.images) for top, left in shape.covering_windows(*example.mask.shape)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        number, top, left = self.windows[index]
        example, weight = self.images[number], self.weights[number]
        mask = example.mask.clone()
        for earlier, earlier_top, earlier_left in self.windows[:index]:
            if earlier == number:
                self.shape.cut_output(mask, earlier_top, earlier_left).fill_(IGNORE_INDEX)
        mask = self.shape.cut_output(mask, top, left)
        if weight is not None:
            # ignored pixels weigh nothing, so a weighted mean over the window stays a mean over scored pixels
            weight = self.shape.cut_output(weight, top, left).masked_fill(mask == IGNORE_INDEX, 0.0)
        return _example(self.shape.cut_input(example.image, top, left), mask, weight)
