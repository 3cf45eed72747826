"""Source separation with a trained Wave-U-Net.

- :mod:`.apply`: the algorithm: which windows, the streaming engine, and :func:`separate` for
  audio held in memory;
- :mod:`.files`: audio files in, stem files out (:func:`separate_file`, :func:`separate_files`);
- :mod:`.inputs`: which files a run separates (folders searched, ``-r``);
- :mod:`.naming`: where each stem goes (``--filename`` templates) and the clash checks.
"""

from .apply import (BATCH_SIZE, BLOCK_SECONDS, CUDA_BATCH_SIZE, WINDOW_SECONDS, inference_tiling, separate,
                    separate_stream, stem_names, translation_equivariant)
from .files import BatchResult, FileOptions, SeparatedFile, output_paths, separate_file, separate_files
from .inputs import AUDIO_EXTENSIONS, Input, find_inputs
from .naming import DEFAULT_FILENAME, plan_outputs

__all__ = ["separate", "separate_stream", "stem_names", "separate_file", "separate_files", "SeparatedFile", "BatchResult",
           "FileOptions",
           "Input", "find_inputs", "AUDIO_EXTENSIONS", "DEFAULT_FILENAME", "plan_outputs", "inference_tiling",
           "translation_equivariant", "output_paths", "WINDOW_SECONDS", "BATCH_SIZE", "CUDA_BATCH_SIZE",
           "BLOCK_SECONDS"]
