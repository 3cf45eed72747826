"""An exported Wave-U-Net (:mod:`waveunet.export`) run by onnxruntime, behind the model interface.

:class:`OnnxModel` is what the separation engine sees as a model: a ``config`` (rebuilt from the
file's metadata), the size arithmetic (``sizes``, ``length_step``, ...; the same pure functions as
the PyTorch model's, from the same config), and a forward pass on tensors, which onnxruntime
computes. So ``waveunet separate --model model.onnx`` windows, streams and resamples exactly as for
the PyTorch model. Only onnxruntime is needed here (not the ``onnx`` package, nor torch's exporter).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import WaveUNetError
from .export import INPUT, METADATA_VERSION, OUTPUT
from .models.config import config_from_dict
from .sizes import SizedNetwork, SizePaths

#: onnxruntime's execution provider per torch device type
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise WaveUNetError("running ONNX models needs onnxruntime: pip install 'waveunet[onnx]'") from None
    return onnxruntime


def _session(path: Path, providers: list[str], optimise: bool = True):
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not the user's input
    # no busy-waiting between runs: the engine cuts, stitches and resamples (in torch) between windows, on the same
    # cores; spinning took 9.9 instead of 7.6 CPU seconds for 30 s with M4, for no faster separation (2 cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimise:  # only the metadata is wanted
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise WaveUNetError(f"{path}: not a readable ONNX model ({reason})") from None


def read_onnx_metadata(path: str | os.PathLike, session=None) -> tuple[object, dict, dict[str, str]]:
    """``(config, checkpoint metadata, all metadata strings)`` of an ONNX file written by :func:`waveunet.export.export_onnx`."""
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: no such ONNX file")
    session = session or _session(path, ["CPUExecutionProvider"], optimise=False)
    props = dict(session.get_modelmeta().custom_metadata_map)
    if "waveunet.config" not in props:
        raise WaveUNetError(f"{path}: an ONNX model without waveunet metadata (make one with `waveunet export`)")
    if props.get("waveunet.metadata_version") != METADATA_VERSION:
        raise WaveUNetError(f"{path}: waveunet ONNX metadata version {props.get('waveunet.metadata_version')!r}; "
                            f"this version reads {METADATA_VERSION!r}")
    config = config_from_dict(json.loads(props["waveunet.config"]), source=str(path))
    return config, json.loads(props.get("waveunet.checkpoint_metadata", "{}")), props


def providers_for(device: str | torch.device | None, path: Path) -> tuple[list[str], torch.device]:
    """onnxruntime's providers for ``device`` (``auto``: CUDA where this onnxruntime has it, else the CPU)."""
    available = _onnxruntime().get_available_providers()
    name = "auto" if device is None else str(device)
    if name == "auto":
        device = torch.device("cuda" if PROVIDERS["cuda"] in available else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise WaveUNetError(f"device {name!r}: choose cpu, cuda or auto") from None
    if device.type not in PROVIDERS:
        raise WaveUNetError(f"{path}: onnxruntime runs this ONNX model on cpu or cuda, not {device.type}")
    if device.type == "cuda":
        if PROVIDERS["cuda"] not in available:
            raise WaveUNetError(f"{path}: this onnxruntime has no CUDA provider (install onnxruntime-gpu, or use "
                                f"--device cpu)")
        return [(PROVIDERS["cuda"], {"device_id": device.index or 0}), PROVIDERS["cpu"]], device
    return [PROVIDERS["cpu"]], device


class OnnxModel(SizedNetwork, nn.Module):
    """A Wave-U-Net in an ONNX file, run by onnxruntime.

    ``forward(mix)``: ``[batch, channels, input_length]`` -> ``[batch, sources, channels,
    output_length]`` (float32, on the CPU), for the valid input lengths of ``config``, as the model
    it was exported from. It has no parameters; ``device`` says where onnxruntime runs it.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = "auto"):
        super().__init__()
        from .info import meta_model

        self.path = Path(path)
        if not self.path.is_file():
            raise WaveUNetError(f"{self.path}: no such ONNX file")
        providers, self.device = providers_for(device, self.path)
        self.session = _session(self.path, providers)
        self.config, self.metadata, self.onnx_metadata = read_onnx_metadata(self.path, self.session)
        # the size arithmetic of the same config, from its layers' size ops (no weights: the meta device)
        self._size_paths = meta_model(self.config).size_paths()
        self.training_sizes = self.sizes(self.config.output_length)

    def size_paths(self) -> SizePaths:
        return self._size_paths

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        self.check_input_length(mix.shape[-1])
        array = mix.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: array})[0])

    def extra_repr(self) -> str:
        return f"{self.path}, {self.config.name}, on {self.device.type}"


def load_onnx_model(path: str | os.PathLike, device: str | torch.device | None = "auto") -> OnnxModel:
    """The ONNX model at ``path`` (written by ``waveunet export``), run by onnxruntime on ``device``."""
    return OnnxModel(path, device)
