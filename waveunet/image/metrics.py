"""Validation metrics of a segmentation: pixel accuracy, and intersection over union and Dice per class.

Both follow from the confusion matrix C[k, j] (pixels of true class k predicted as j), summed over
all validation windows before any ratio is taken, so that every scored pixel counts once whatever
the window it fell in. Pixels marked :data:`~waveunet.image.datasets.IGNORE_INDEX` are not scored.

- pixel accuracy: trace(C) / sum(C);
- IoU of class k: C[k, k] / (sum_j C[k, j] + sum_j C[j, k] - C[k, k]); a class that is neither
  present nor predicted has no IoU (NaN) and is left out of the mean (``valid_iou``);
- Dice (F1) of class k: 2 C[k, k] / (sum_j C[k, j] + sum_j C[j, k]), NaN and left out of the mean
  (``valid_dice``) likewise.
"""

from __future__ import annotations

import math

import torch

from .datasets import IGNORE_INDEX


def confusion_matrix(predicted: torch.Tensor, mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C [num_classes, num_classes] int64: C[k, j] counts pixels of class k predicted as j.

    predicted and mask: int64 class indices of the same shape (e.g. [batch, H, W]); mask pixels
    equal to IGNORE_INDEX are skipped.
    """
    scored = mask != IGNORE_INDEX
    truth, guess = mask[scored].long(), predicted[scored].long()
    counts = torch.bincount(truth * num_classes + guess, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).cpu()


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of scored pixels whose predicted class is right (NaN if none was scored)."""
    total = int(confusion.sum())
    return int(confusion.diagonal().sum()) / total if total else math.nan


def iou_per_class(confusion: torch.Tensor) -> list[float]:
    """IoU of each class, NaN where the class is neither present nor predicted."""
    hits = confusion.diagonal().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - hits
    return [float(h / u) if u else math.nan for h, u in zip(hits, union)]


def dice_per_class(confusion: torch.Tensor) -> list[float]:
    """Dice coefficient of each class, NaN where the class is neither present nor predicted."""
    hits = confusion.diagonal().double()
    sizes = confusion.sum(0).double() + confusion.sum(1).double()
    return [float(2 * h / n) if n else math.nan for h, n in zip(hits, sizes)]


def _mean_defined(values: list[float]) -> float:
    defined = [value for value in values if not math.isnan(value)]
    return sum(defined) / len(defined) if defined else math.nan


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes that have one."""
    return _mean_defined(iou_per_class(confusion))


def mean_dice(confusion: torch.Tensor) -> float:
    """Mean Dice over the classes that have one."""
    return _mean_defined(dice_per_class(confusion))


def segmentation_metrics(confusion: torch.Tensor, prefix: str = "valid_",
                         names: list[str] | None = None) -> dict[str, float]:
    """``{prefix}accuracy``, the means ``{prefix}iou`` and ``{prefix}dice``, and per class
    ``{prefix}iou_<name>`` and ``{prefix}dice_<name>`` (``names`` default to the indices 0, 1, ...)."""
    names = names or [str(k) for k in range(confusion.shape[0])]
    if len(names) != confusion.shape[0]:
        raise ValueError(f"{len(names)} class names for {confusion.shape[0]} classes")
    metrics = {f"{prefix}accuracy": pixel_accuracy(confusion), f"{prefix}iou": mean_iou(confusion),
               f"{prefix}dice": mean_dice(confusion)}
    metrics.update({f"{prefix}iou_{name}": value for name, value in zip(names, iou_per_class(confusion))})
    metrics.update({f"{prefix}dice_{name}": value for name, value in zip(names, dice_per_class(confusion))})
    return metrics
