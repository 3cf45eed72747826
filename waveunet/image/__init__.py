"""Image segmentation with the 2D U-Net (Ronneberger et al., 2015) and the U-Net with a ResNet encoder.

- :mod:`.data`: image and mask files (class indices, or colours of a class table) -> tensors, the
  folder dataset, train/validation split.
- :mod:`.windows`: mirror (``reflect``) padding and the input/output windows of valid-convolution models.
- :mod:`.weights`: the paper's per-pixel loss weights (class balance plus border emphasis).
- :mod:`.augment`: flips, 90-degree rotations, elastic deformation and intensity jitter, applied
  jointly to image and mask.
- :mod:`.datasets`: random training crops and deterministic validation windows.
- :mod:`.losses`, :mod:`.metrics`: cross-entropy and Dice; pixel accuracy, IoU and Dice per class.
- :mod:`.palette`: class colours for masks, overlays and TensorBoard.
- :mod:`.segment`: overlap-tile segmentation of images of any size, and the files it writes.
- :mod:`.importer`: checkpoints of yassouali/pytorch-segmentation's ``UNet`` and ``UNetResnet`` in.
"""
