"""Image segmentation with the 2D U-Net (Ronneberger et al., 2015).

- :mod:`.data`: image and mask files -> tensors, the folder dataset, train/validation split.
- :mod:`.windows`: mirror (``reflect``) padding and the input/output windows of valid-convolution models.
- :mod:`.weights`: the paper's per-pixel loss weights (class balance plus border emphasis).
- :mod:`.augment`: flips, 90-degree rotations, elastic deformation and intensity jitter, applied
  jointly to image and mask.
- :mod:`.datasets`: random training crops and deterministic validation windows.
"""
