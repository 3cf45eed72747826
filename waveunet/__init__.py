"""waveunet: the Wave-U-Net (Stoller et al., 2018) for audio source separation, and the 2D U-Net
(Ronneberger et al., 2015) built from the same blocks.

Top-level API::

    model = waveunet.build_model("M4")              # a preset, or a config dataclass
    waveunet.save_model(model, "m4.pt")
    model = waveunet.load_model("m4.pt")            # or a bundled name such as "demo"
    estimates = waveunet.separate(model, audio, sample_rate)   # dict[source, Tensor]
"""

__version__ = "0.2.0"

from .errors import WaveUNetError  # noqa: E402

_LAZY = {
    "build_model": "waveunet.models.registry",
    "list_presets": "waveunet.models.registry",
    "save_model": "waveunet.checkpoint",
    "load_model": "waveunet.resolve",
    "import_pytorch_checkpoint": "waveunet.importer",
    "separate": "waveunet.separation",
    "separate_file": "waveunet.separation",
    "segment": "waveunet.image.segment",
}


def __getattr__(name):
    # Lazy so that `import waveunet` (and the CLI start-up) does not pay for every sub-module.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'waveunet' has no attribute {name!r}")


__all__ = ["WaveUNetError", "__version__", *_LAZY]
