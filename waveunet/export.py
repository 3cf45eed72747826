"""Exporting a Wave-U-Net to ONNX, with everything needed to run it in the ONNX metadata.

The graph takes ``mixture [batch, channels, input_length]`` and gives ``estimates [batch, sources,
channels, output_length]``, the model's own forward pass. Both the batch and the time axis are
dynamic: ``input_length`` may be any of the model's valid input lengths, ``min_input_length + k *
length_step`` for ``k >= 0``, and the output is then ``input_length - 2 * context`` long (the whole
input for same-padding models). The metadata (:func:`onnx_metadata`) states these numbers, the
rate, the sources and how the streaming engine windows a song, and carries the model's config, from
which :mod:`waveunet.onnx_model` makes the exported file look to the separation engine like the
model itself.

Why the TorchScript-based exporter: the graph is traced once at a valid length; the length
arithmetic inside the network (convolutions, decimation, interpolation, crops) is recorded as shape
operations, and the checks that raise for invalid lengths, constant for valid ones, are what the
tracer warns about. torch.export's exporter has to prove every crop valid over a symbolic length
first, which took 3 minutes for the 6-level demo model (and longer for 12 levels). Parity is checked
on fresh lengths after every export (:func:`check_parity`), so a trace that did not generalise is
an error, not a silent difference.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .atomic import atomic_path, check_destination
from .errors import WaveUNetError
from .models.config import config_to_dict

#: the graph's input and output names
INPUT, OUTPUT = "mixture", "estimates"
#: the ONNX operator set (onnxruntime >= 1.14 runs it)
OPSET = 17
#: the version of the metadata layout below
METADATA_VERSION = "1"
#: lengths checked against PyTorch after an export: multiples of the length step beyond the smallest input
PARITY_STEPS = (0, 3)


def valid_inputs(model: nn.Module) -> tuple[int, int]:
    """``(smallest valid input length, step between valid lengths)``."""
    return model.sizes(1).input_length, model.length_step


def onnx_metadata(model: nn.Module, metadata: dict | None = None) -> dict[str, str]:
    """The ONNX metadata of an exported Wave-U-Net: what it computes and how to run it, as strings.

    ``metadata``: the checkpoint's own metadata (training step, data, ...), kept as JSON.
    """
    from .separation.apply import inference_tiling, translation_equivariant

    c = model.config
    smallest, step = valid_inputs(model)
    shortest = model.output_length_for(smallest)
    tiling = inference_tiling(model)
    if c.padding == "same":
        windows = (f"windows of {tiling.input[0]} samples overlapping by half, outputs blended with triangular "
                   f"weights (same padding: the output depends on where a window lies)")
    elif translation_equivariant(c):
        windows = (f"abutting windows whose output hops are multiples of length_step ({step}), the song zero-padded "
                   f"by the context: equals one pass over the whole song")
    else:
        windows = (f"the training window ({tiling.input[0]} -> {tiling.output[0]} samples) one output length apart, "
                   f"the song zero-padded by the context (the output depends on where a window lies)")
    return {
        "waveunet.metadata_version": METADATA_VERSION,
        "waveunet.config": json.dumps(config_to_dict(c)),
        "waveunet.checkpoint_metadata": json.dumps(metadata or {}, default=str),
        "name": c.name,
        "sample_rate": str(c.sample_rate),
        "channels": str(c.channels),
        "sources": ",".join(c.sources),
        "output": c.output if c.output == "direct" else f"difference: the last source ({c.sources[-1]}) is the mixture "
                                                        f"minus the others",
        "input": f"{INPUT}: float32 [batch, {c.channels}, input_length] at {c.sample_rate} Hz",
        "output_tensor": f"{OUTPUT}: float32 [batch, {len(c.sources)}, {c.channels}, output_length]",
        "input_length": str(model.input_length),
        "output_length": str(model.output_length),
        "context": str((smallest - shortest) // 2),
        "min_input_length": str(smallest),
        "min_output_length": str(shortest),
        "length_step": str(step),
        "valid_input_lengths": f"{smallest} + k * {step} for k >= 0",
        "output_length_of_input": f"input_length - {smallest - shortest}",
        "streaming": windows,
    }


def _trace(model: nn.Module, opset: int) -> bytes:
    """The ONNX graph of ``model`` (eval mode, CPU), traced at a valid length, with dynamic batch and time."""
    smallest, step = valid_inputs(model)
    # batch 2 and k = 2: no axis of the example is 1, so none can be taken for a constant
    example = torch.zeros(2, model.config.channels, smallest + 2 * step)
    if not 14 <= opset <= 20:  # 14: the oldest checked (with parity); 20: the TorchScript exporter's newest
        raise WaveUNetError(f"opset {opset}: choose 14 to 20")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the size checks of the network are constant over valid lengths (see the module's docstring), and the
        # legacy exporter announces that it is the legacy exporter
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # strided slices (decimation) are left to onnxruntime rather than folded at export: a note, not a problem
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch", 2: "input_length"},
                                                               OUTPUT: {0: "batch", 3: "output_length"}})
    return buffer.getvalue()


@dataclass(frozen=True)
class Exported:
    """What :func:`export_onnx` wrote."""

    path: Path
    bytes: int
    max_abs_diff: float  # onnxruntime against PyTorch over the lengths of PARITY_STEPS
    metadata: dict[str, str]


def export_onnx(model: nn.Module, path: str | os.PathLike, *, metadata: dict | None = None, opset: int = OPSET,
                force: bool = False) -> Exported:
    """Write ``model`` (a Wave-U-Net) to ``path`` as ONNX, atomically, and check it against PyTorch.

    The check runs the file with onnxruntime on the valid input lengths of :data:`PARITY_STEPS` and
    raises :class:`WaveUNetError` if the outputs differ from PyTorch's by more than 1e-4.
    """
    from .separation.apply import check_audio_model

    check_audio_model(model)
    onnx, _ = _import_onnx()
    path = Path(path)
    check_destination(path, force)
    model = copy.deepcopy(model).eval().float().cpu()  # the caller's model stays as it is (mode, device, dtype)
    proto = onnx.load_model_from_string(_trace(model, opset))
    described = onnx_metadata(model, metadata)
    for key, value in described.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "waveunet", __version__
    proto.doc_string = f"Wave-U-Net {model.config.name}: {described['input']} -> {described['output_tensor']}"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    difference = check_parity(model, data)
    if difference > 1e-4:
        raise WaveUNetError(f"{path}: the exported graph differs from PyTorch by {difference:.1e} (more than 1e-4); "
                            f"not written")
    with atomic_path(path, ".onnx") as temporary:
        temporary.write_bytes(data)
    return Exported(path, len(data), difference, described)


def check_parity(model: nn.Module, graph: bytes, steps=PARITY_STEPS, batch: int = 2, seed: int = 0) -> float:
    """The largest difference between onnxruntime running ``graph`` and PyTorch running ``model``.

    On random mixtures of the valid lengths ``min_input_length + k * length_step``, ``k`` in ``steps``.
    """
    _, ort = _import_onnx()
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    smallest, step = valid_inputs(model)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for k in steps:
        mixture = 0.3 * torch.randn(batch, model.config.channels, smallest + k * step, generator=generator)
        with torch.inference_mode():
            expected = model(mixture)
        got = torch.from_numpy(session.run([OUTPUT], {INPUT: mixture.numpy()})[0])
        if got.shape != expected.shape:
            return float("inf")
        worst = max(worst, (got - expected).abs().max().item())
    return worst


def _import_onnx():
    """``(onnx, onnxruntime)``, or one line saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise WaveUNetError(f"ONNX export needs onnx and onnxruntime ({error.name} is missing): "
                            f"pip install 'waveunet[onnx]'") from None
    return onnx, onnxruntime
