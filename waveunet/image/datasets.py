"""Training and validation samples for a segmentation model with a given window shape.

Each sample is a dict: ``image`` [C, in_h, in_w] float32 (the model input, mirror-padded where it
leaves the image), ``mask`` [out_h, out_w] int64 (the labels under the model's output window) and,
when weight maps are asked for, ``weight`` [out_h, out_w] float32 (the paper's per-pixel loss
weights, computed once per image on the whole mask so that cells cut by the window keep their
borders). For same-padding models the input and output windows are equal.
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


def _sample(image: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None) -> dict[str, torch.Tensor]:
    sample = {"image": image, "mask": mask}
    if weight is not None:
        sample["weight"] = weight
    return sample


class RandomCrops(torch.utils.data.Dataset):
    """``samples`` training crops per epoch: augmented images cut at random output windows.

    Item i takes image i mod len(images), so every image is seen equally often; its augmentation
    and window are drawn from a generator seeded by (seed, epoch, i), so a sample does not depend
    on the DataLoader's workers and a resumed run sees the same samples. Call :meth:`set_epoch`
    before iterating each epoch (with non-persistent workers).
    """

    def __init__(
        self,
        images: Sequence[LabelledImage],
        shape: WindowShape,
        *,
        samples: int,
        num_classes: int = 2,
        augmentation: AugmentConfig | None = None,
        weight_map: WeightMapConfig | None = None,
        seed: int = 0,
    ):
        if not images:
            raise WaveUNetError("no training images")
        self.images, self.shape, self.samples = list(images), shape, samples
        self.augmentation, self.seed, self.epoch = augmentation, seed, 0
        # a quarter turn swaps height and width, so then both orientations must fit
        _check_fit(self.images, shape, transposed=augmentation is not None and augmentation.rotate90)
        self.weights = _weight_maps(self.images, num_classes, weight_map)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        example = self.images[index % len(self.images)]
        image, mask, weight = example.image, example.mask, self.weights[index % len(self.images)]
        if self.augmentation is not None:
            image, mask, weight = augment(image, mask, self.augmentation, generator, weight)
        top, left = self.shape.random_window(*mask.shape, generator)
        cut = self.shape.cut_output
        return _sample(
            self.shape.cut_input(image, top, left), cut(mask, top, left), None if weight is None else cut(weight, top, left)
        )


class ValidationWindows(torch.utils.data.Dataset):
    """Fixed output windows covering every validation image, each pixel scored exactly once.

    Windows follow :meth:`WindowShape.covering_windows`; where a window overlaps one before it,
    those mask pixels are set to :data:`IGNORE_INDEX`, so summing over the windows counts every
    image pixel once. No augmentation.
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

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        number, top, left = self.windows[index]
        example, weight = self.images[number], self.weights[number]
        mask = example.mask.clone()
        for earlier, earlier_top, earlier_left in self.windows[:index]:
            if earlier == number:
                self.shape.cut_output(mask, earlier_top, earlier_left).fill_(IGNORE_INDEX)
        cut = self.shape.cut_output
        return _sample(
            self.shape.cut_input(example.image, top, left),
            cut(mask, top, left),
            None if weight is None else cut(weight, top, left),
        )
