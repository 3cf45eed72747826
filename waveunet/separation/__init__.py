"""Source separation with a trained Wave-U-Net.

- :mod:`.apply`: the algorithm: which windows, the streaming engine, and :func:`separate` for
  audio held in memory;
- :mod:`.files`: audio files in, stem files out (:func:`separate_file`, :func:`separate_files`).
"""

from .apply import (BATCH_SIZE, BLOCK_SECONDS, CUDA_BATCH_SIZE, WINDOW_SECONDS, inference_tiling, separate,
                    separate_stream, stem_names, translation_equivariant)
from .files import SeparatedFile, output_paths, separate_file, separate_files

__all__ = ["separate", "separate_stream", "stem_names", "separate_file", "separate_files", "SeparatedFile", "inference_tiling",
           "translation_equivariant", "output_paths", "WINDOW_SECONDS", "BATCH_SIZE", "CUDA_BATCH_SIZE",
           "BLOCK_SECONDS"]
