"""Segmentation losses: pixel-wise cross-entropy with the U-Net paper's weight maps, and Dice.

The U-Net paper (Ronneberger et al., 2015, eq. 1) minimises the cross-entropy of the soft-max
class scores, each pixel weighted by w(x) (:mod:`waveunet.image.weights`), so that the thin
membranes between touching cells count more than their area. Here the weighted sum is divided by
the total weight, which keeps the loss on the scale of the plain cross-entropy and lets batches
and windows with different weight totals be compared.

Pixels whose mask holds :data:`~waveunet.image.datasets.IGNORE_INDEX` (the parts of validation
windows scored elsewhere) do not contribute to either loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .datasets import IGNORE_INDEX


def cross_entropy(scores: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (weighted) cross-entropy of class scores against a class-index mask.

    Args:
        scores: [batch, classes, H, W] unnormalised class scores (logits).
        mask: [batch, H, W] int64 class indices; IGNORE_INDEX pixels are skipped.
        weight: [batch, H, W] per-pixel weights w(x) >= 0, or None for the plain mean.

    Returns:
        A scalar: sum(w * ce) / sum(w) over the scored pixels (w = 1 without a weight map).
    """
    per_pixel = F.cross_entropy(scores, mask, reduction="none", ignore_index=IGNORE_INDEX)
    scored = (mask != IGNORE_INDEX).to(per_pixel.dtype)
    weight = scored if weight is None else weight.to(per_pixel.dtype) * scored
    # clamp: a window of only ignored pixels has zero loss, not 0/0
    return (weight * per_pixel).sum() / weight.sum().clamp(min=torch.finfo(per_pixel.dtype).eps)


def dice_loss(scores: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """One minus the soft Dice coefficient, averaged over classes (Milletari et al., 2016).

    Args:
        scores: [batch, classes, H, W] unnormalised class scores; soft-max gives probabilities p.
        mask: [batch, H, W] int64 class indices g; IGNORE_INDEX pixels are skipped.
        smooth: added to numerator and denominator, so that a class absent from both the
            prediction and the mask scores 1 rather than 0/0.

    Returns:
        A scalar: 1 - mean_k (2 sum p_k g_k + smooth) / (sum p_k + sum g_k + smooth), the sums
        running over all scored pixels of the batch.
    """
    classes = scores.shape[1]
    scored = (mask != IGNORE_INDEX).unsqueeze(1).to(scores.dtype)
    probabilities = scores.softmax(dim=1) * scored
    truth = F.one_hot(mask.clamp(min=0), classes).movedim(-1, 1).to(scores.dtype) * scored
    dims = (0, 2, 3)
    overlap = (probabilities * truth).sum(dims)
    total = probabilities.sum(dims) + truth.sum(dims)
    return 1.0 - ((2.0 * overlap + smooth) / (total + smooth)).mean()


def segmentation_loss(name: str, scores: torch.Tensor, mask: torch.Tensor,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """The loss a recipe names (``train.loss``): ``cross_entropy`` or ``dice`` (which takes no weight map)."""
    if name == "cross_entropy":
        return cross_entropy(scores, mask, weight)
    if name == "dice":
        return dice_loss(scores, mask)
    raise ValueError(f"unknown segmentation loss {name!r} (cross_entropy, dice)")
