"""Audio in and out: reading, writing, resampling and channel matching.

Every waveform in the package is a float32 tensor ``[channels, time]`` in [-1, 1].

- :mod:`.reading`: files -> tensors (soundfile), with one-line errors for bad files;
- :mod:`.writing`: tensors -> files, atomically, whole or block by block;
- :mod:`.resampling`: torchaudio's band-limited resampling, also block by block;
- :mod:`.channels`: mono, stereo and downmixing.
"""

from .channels import match_channels
from .reading import AudioInfo, audio_info, read_audio
from .resampling import StreamResampler, resample
from .writing import CAPACITY, FORMATS, BlockWriter, open_stream, output_rate, write_audio

__all__ = ["AudioInfo", "audio_info", "read_audio", "write_audio", "open_stream", "BlockWriter", "FORMATS", "CAPACITY",
           "output_rate",
           "resample", "StreamResampler", "match_channels"]
