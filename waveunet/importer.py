"""Checkpoints of the PyTorch Wave-U-Net re-implementation (f90/Wave-U-Net-Pytorch), in and out.

That implementation saves ``torch.save({"model_state_dict", "optimizer_state_dict", "state"})``
and no hyper-parameters. Most of them are written in the weights' shapes, so
:func:`import_pytorch_checkpoint` reads them from there (levels, widths and growth, kernel,
audio channels, instruments, normalisation, fixed or learned resampling, one network per
instrument or one for all) and takes the rest (sample rate, output length, and the stride of
learned resampling) from its arguments, with the reference's defaults. The result is one of our
``layout="pytorch"`` Wave-U-Nets whose outputs equal the reference model's, fixed sinc filters
included (they are copied from the file, not recomputed).

Module correspondence (one network, ``nets.<instrument>.`` here, ``waveunets.<instrument>.`` or
``waveunets.ALL.`` there; ``i`` a level, ``j`` a layer)::

    ours                           the reference's                            what
    unet.down.i.stage.0            downsampling_blocks.i.pre_shortcut_convs.0   conv -> skip
    unet.down.i.post_stage.0       downsampling_blocks.i.post_shortcut_convs.0  conv after the skip
    unet.down.i.resample           downsampling_blocks.i.downconv               sinc filter or strided conv
    unet.bottleneck.j              bottlenecks.j
    unet.up.i.resample             upsampling_blocks.i.upconv                   sinc filter or transposed conv
    unet.up.i.pre_stage.0          upsampling_blocks.i.pre_shortcut_convs.0     conv before the merge
    unet.up.i.stage.0              upsampling_blocks.i.post_shortcut_convs.0    conv after the merge
    output.conv                    output_conv

and inside each conv layer our ``conv`` / ``norm`` are its ``filter`` / ``norm``.
"""

from __future__ import annotations

import numbers
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .blocks import sinc_lowpass
from .checkpoint import atomic_torch_save, save_model
from .errors import WaveUNetError
from .models.config import WaveUNetConfig, feature_widths
from .models.wave_u_net import WaveUNet

#: the reference's defaults for what the weights do not tell
DEFAULT_INSTRUMENTS = ("bass", "drums", "other", "vocals")
DEFAULT_SAMPLE_RATE = 44100
DEFAULT_STRIDES = 4
DEFAULT_OUTPUT_SIZE = 2.0  # seconds
SINC_TAPS = 15
SHARED_NET = "ALL"  # the reference's name for the one network of separate=0
BATCH_NORM_MOMENTUM = 0.01  # the reference's BatchNorm1d(momentum=0.01)
LEAKY_SLOPE = 0.01  # F.leaky_relu's default, used by the reference's conv_type="normal"


def _numpy_globals() -> list:
    """What a reference training state may hold besides tensors and Python numbers (losses,
    steps as NumPy scalars), for ``torch.load(weights_only=True)``; public NumPy API only."""
    scalar = np.float64(0).__reduce__()[0]  # NumPy's scalar reconstructor, under whatever module it lives
    allowed = [scalar, np.dtype, *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32"))]
    # Files written under NumPy 1 name it numpy.core.multiarray.scalar, under NumPy 2 numpy._core...
    own = f"{scalar.__module__}.{scalar.__qualname__}"
    allowed += [(scalar, name) for name in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar") if name != own]
    return allowed


#: (our module path, the reference's), ``{i}`` a level or layer index, in the order the blocks run
_MODULES = [
    ("unet.down.{i}.stage.0", "downsampling_blocks.{i}.pre_shortcut_convs.0"),
    ("unet.down.{i}.post_stage.0", "downsampling_blocks.{i}.post_shortcut_convs.0"),
    ("unet.down.{i}.resample", "downsampling_blocks.{i}.downconv"),
    ("unet.bottleneck.{i}", "bottlenecks.{i}"),
    ("unet.up.{i}.resample", "upsampling_blocks.{i}.upconv"),
    ("unet.up.{i}.pre_stage.0", "upsampling_blocks.{i}.pre_shortcut_convs.0"),
    ("unet.up.{i}.stage.0", "upsampling_blocks.{i}.post_shortcut_convs.0"),
    ("output", "output_conv"),
]
#: the parts of a conv layer (or a fixed resampler's ``filter`` buffer), ours -> theirs
_PARTS = {"conv": "filter", "norm": "norm", "filter": "filter"}
_MODULE_PATTERNS = [(re.compile(re.escape(ours).replace(r"\{i\}", r"(\d+)") + r"\.(\w+)(\..+)?"), theirs)
                    for ours, theirs in _MODULES]


def _translate(key: str) -> str | None:
    """Our key within one network (``unet.down.0.stage.0.conv.weight``) -> the reference's, or None."""
    for pattern, theirs in _MODULE_PATTERNS:
        match = pattern.fullmatch(key)
        if match:
            *index, part, rest = match.groups()
            module = theirs.replace("{i}", index[0]) if index else theirs
            if theirs == "output_conv" and part == "conv":  # a bare Conv1d there
                return f"{module}{rest}"
            if part in _PARTS:
                return f"{module}.{_PARTS[part]}{rest or ''}"
    return None


def reference_net_name(config: WaveUNetConfig, ours: str) -> str:
    """Our network name (a source, or ``all``) -> the reference's (an instrument, or ``ALL``)."""
    return ours if config.separate else SHARED_NET


def reference_key(config: WaveUNetConfig, key: str) -> str:
    """Our state-dict key (``nets.<net>.<...>``) -> the reference's (``waveunets.<net>.<...>``)."""
    _, net, rest = key.split(".", 2)
    theirs = _translate(rest)
    if theirs is None:
        raise ValueError(f"no reference counterpart for {key!r}")
    return f"waveunets.{reference_net_name(config, net)}.{theirs}"


# --- reading a reference checkpoint ------------------------------------------------------------


def load_foreign_checkpoint(path: Path):
    """What ``torch.save`` wrote to ``path`` (another project's checkpoint), loaded with
    ``weights_only`` (a file from elsewhere must not run code) and NumPy scalars allowed (training
    states hold losses and steps as such). :class:`WaveUNetError` for an unreadable file and for
    one of our own checkpoints."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        what = "Python objects other than tensors and numbers" if "Weights only" in str(error) else "no torch pickle"
        raise WaveUNetError(f"{path}: not a readable PyTorch checkpoint ({what})") from None
    except Exception as error:  # torch raises many types for a file that is not a torch pickle
        raise WaveUNetError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__})") from None
    if isinstance(ckpt, dict) and ckpt.get("format") == "waveunet":
        raise WaveUNetError(f"{path}: already a waveunet checkpoint; load it with waveunet.load_model")
    return ckpt


def load_translated(model: torch.nn.Module, state: dict[str, torch.Tensor], theirs_of, path: Path, what: str) -> None:
    """Load another project's ``state`` into ``model`` (then in eval mode), our key ``k`` being its
    ``theirs_of(k)``; every key and shape must match, else :class:`WaveUNetError` naming ``path``
    and ``what`` the weights should have fitted."""
    ours = model.state_dict()
    wanted = {theirs_of(k): k for k in ours}
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        count = len(missing) + len(unexpected)
        raise WaveUNetError(f"{path}: weights do not fit {what} ({first}"
                            f"{f' and {count - 1} more' if count > 1 else ''})")
    for theirs, key in wanted.items():
        if state[theirs].shape != ours[key].shape:
            raise WaveUNetError(f"{path}: {theirs} has shape {list(state[theirs].shape)}, "
                                f"expected {list(ours[key].shape)}")
    model.load_state_dict({key: state[theirs].to(ours[key].dtype) for theirs, key in wanted.items()})
    model.eval()


def read_reference_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The model state dict (``module.`` prefixes removed) and the training ``state`` of a reference
    checkpoint; a bare state dict is accepted too. :class:`WaveUNetError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: no such file")
    ckpt = load_foreign_checkpoint(path)
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WaveUNetError(f"{path}: not a PyTorch Wave-U-Net checkpoint (no model_state_dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("waveunets.") for k in state):
        raise WaveUNetError(f"{path}: not a PyTorch Wave-U-Net checkpoint (no waveunets.<instrument>. weights)")
    training = ckpt.get("state", {}) if "model_state_dict" in ckpt else {}
    return state, training if isinstance(training, dict) else {}


@dataclass(frozen=True)
class ReferenceArchitecture:
    """What a reference state dict tells about its model."""

    nets: tuple[str, ...]  # instruments, or ("ALL",)
    channels: int
    widths: tuple[int, ...]  # F_0 .. F_L
    kernel: int
    output_kernel: int
    outputs: int  # output channels of one network
    conv_type: str  # gn | bn | normal
    res: str  # fixed | learned
    strides: int | None  # read from a fixed filter; None when learned


def _shape(state: dict, key: str, dims: int, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise WaveUNetError(f"{path}: missing weight {key}")
    shape = tuple(state[key].shape)
    if len(shape) != dims:
        raise WaveUNetError(f"{path}: {key} has shape {list(shape)}, expected {dims} dimensions")
    return shape


def _count(keys, prefix: str) -> int:
    """Number of consecutive entries ``prefix<i>.`` (i = 0, 1, ...) of a ModuleList."""
    indices = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return len(indices) if indices == set(range(len(indices))) else -1


def sinc_stride(filter: torch.Tensor, max_stride: int = 64) -> int | None:
    """The stride whose reference low-pass (cutoff 0.5 / stride) is ``filter`` ``[channels, 1, taps]``."""
    taps = filter.shape[-1]
    for stride in range(2, max_stride + 1):
        if torch.allclose(filter.double(), sinc_lowpass(stride, taps).double().expand_as(filter), atol=1e-6):
            return stride
    return None


def infer_architecture(state: dict[str, torch.Tensor], path: str | os.PathLike = "checkpoint") -> ReferenceArchitecture:
    """Read levels, widths, kernel, channels, networks, norm and resampling from a reference state dict."""
    path = Path(path)
    nets = tuple(dict.fromkeys(k.split(".")[1] for k in state if k.startswith("waveunets.")))
    if SHARED_NET in nets and len(nets) > 1:
        raise WaveUNetError(f"{path}: has both a shared ALL network and per-instrument networks")
    keys = [k.split(".", 2)[2] for k in state if k.startswith(f"waveunets.{nets[0]}.")]
    net = {k: state[f"waveunets.{nets[0]}.{k}"] for k in keys}

    levels = _count(keys, "downsampling_blocks.")
    if levels < 1 or _count(keys, "upsampling_blocks.") != levels:
        raise WaveUNetError(f"{path}: expected as many (>= 1) upsampling as downsampling blocks")
    if _count(keys, "downsampling_blocks.0.pre_shortcut_convs.") != 1 or _count(keys, "bottlenecks.") != 1:
        raise WaveUNetError(f"{path}: only depth 1 is supported (the reference runs only with depth 1)")

    first = _shape(net, "downsampling_blocks.0.pre_shortcut_convs.0.filter.weight", 3, path)
    widths = [_shape(net, f"downsampling_blocks.{i}.pre_shortcut_convs.0.filter.weight", 3, path)[0]
              for i in range(levels)]
    widths.append(_shape(net, f"downsampling_blocks.{levels - 1}.post_shortcut_convs.0.filter.weight", 3, path)[0])
    output = _shape(net, "output_conv.weight", 3, path)

    if "downsampling_blocks.0.pre_shortcut_convs.0.norm.running_mean" in net:
        conv_type = "bn"
    elif "downsampling_blocks.0.pre_shortcut_convs.0.norm.weight" in net:
        conv_type = "gn"
    else:
        conv_type = "normal"

    if "downsampling_blocks.0.downconv.filter" in net:
        res = "fixed"
        down = _shape(net, "downsampling_blocks.0.downconv.filter", 3, path)
        if down[1:] != (1, SINC_TAPS):
            raise WaveUNetError(f"{path}: downconv.filter has shape {list(down)}; expected [C, 1, {SINC_TAPS}]")
        strides = sinc_stride(net["downsampling_blocks.0.downconv.filter"])
        if strides is None:
            raise WaveUNetError(f"{path}: downconv.filter is not the reference's sinc low-pass for any stride")
    elif "downsampling_blocks.0.downconv.filter.weight" in net:
        res, strides = "learned", None
    else:
        raise WaveUNetError(f"{path}: no downconv weights in downsampling_blocks.0")

    return ReferenceArchitecture(nets=nets, channels=first[1], widths=tuple(widths), kernel=first[2],
                                 output_kernel=output[2], outputs=output[0], conv_type=conv_type, res=res,
                                 strides=strides)


def _growth(widths: tuple[int, ...], path: Path) -> str:
    for growth in ("double", "add"):
        if tuple(feature_widths(widths[0], growth, len(widths))) == widths:
            return growth
    raise WaveUNetError(f"{path}: feature widths {list(widths)} follow neither double nor add growth")


def config_from_reference(arch: ReferenceArchitecture, *, sample_rate: int = DEFAULT_SAMPLE_RATE,
                          instruments: tuple[str, ...] | None = None, strides: int | None = None,
                          output_size: float = DEFAULT_OUTPUT_SIZE, name: str = "pytorch-import",
                          path: str | os.PathLike = "checkpoint") -> WaveUNetConfig:
    """Our config for a reference architecture, with the user's (or default) hyper-parameters."""
    path = Path(path)
    separate = arch.nets != (SHARED_NET,)
    if separate:
        sources = arch.nets
        if instruments is not None:
            if sorted(instruments) != sorted(arch.nets):
                raise WaveUNetError(f"{path}: holds networks for {', '.join(arch.nets)}, "
                                    f"not the instruments given ({', '.join(instruments)})")
            sources = tuple(instruments)
        if arch.outputs != arch.channels:
            raise WaveUNetError(f"{path}: output_conv has {arch.outputs} outputs for {arch.channels} channels")
    else:
        sources = tuple(instruments) if instruments is not None else DEFAULT_INSTRUMENTS
        if arch.outputs != arch.channels * len(sources):
            raise WaveUNetError(f"{path}: the shared network has {arch.outputs} outputs, which is not "
                                f"{arch.channels} channels x {len(sources)} instruments ({', '.join(sources)}); "
                                f"pass the instruments it was trained for")
    if arch.strides is not None and strides is not None and strides != arch.strides:
        raise WaveUNetError(f"{path}: its sinc filters resample by {arch.strides}, not by the {strides} given")
    norm, activation = {"gn": ("group", "relu"), "bn": ("batch", "relu"), "normal": ("none", "leaky_relu")}[arch.conv_type]
    fixed = arch.res == "fixed"
    try:
        return WaveUNetConfig(
            name=name, layout="pytorch", sources=sources, channels=arch.channels, sample_rate=sample_rate,
            levels=len(arch.widths) - 1, features=arch.widths[0], growth=_growth(arch.widths, path),
            down_kernel=arch.kernel, up_kernel=arch.kernel, output_kernel=arch.output_kernel, padding="valid",
            downsample="sinc" if fixed else "conv", upsample="sinc" if fixed else "transposed",
            resample_factor=arch.strides or strides or DEFAULT_STRIDES, norm=norm,
            norm_momentum=BATCH_NORM_MOMENTUM if norm == "batch" else 0.1, activation=activation,
            negative_slope=LEAKY_SLOPE if activation == "leaky_relu" else WaveUNetConfig.negative_slope, depth=1, output="direct", output_activation="linear",
            separate=separate, output_length=int(output_size * sample_rate))
    except ValueError as error:
        raise WaveUNetError(f"{path}: {error}") from None


def import_pytorch_checkpoint(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                              sample_rate: int = DEFAULT_SAMPLE_RATE, instruments: list[str] | None = None,
                              strides: int | None = None, output_size: float = DEFAULT_OUTPUT_SIZE) -> WaveUNet:
    """Convert a PyTorch Wave-U-Net checkpoint into our :class:`WaveUNet` (saved to ``dst`` if given).

    Args:
        src: the reference's checkpoint (``model_state_dict`` ...), or a bare state dict.
        dst: where to write our checkpoint (:func:`waveunet.save_model`), or None.
        sample_rate: the rate the model was trained at (not in the file; reference default 44100).
        instruments: source names; needed for a shared (``ALL``) network unless it was trained on
            the default bass, drums, other, vocals; for per-instrument networks only a reordering.
        strides: resampling factor per level; read from fixed sinc filters, needed for learned ones.
        output_size: training output length in seconds (reference default 2.0).

    Returns the model in eval mode; its ``metadata`` records the source file and training step.
    """
    src = Path(src)
    state, training = read_reference_state(src)
    arch = infer_architecture(state, src)
    config = config_from_reference(arch, sample_rate=sample_rate, instruments=tuple(instruments) if instruments else None,
                                   strides=strides, output_size=output_size, name=f"pytorch-import:{src.stem}", path=src)
    try:
        model = WaveUNet(config)
    except ValueError as error:
        raise WaveUNetError(f"{src}: {error}") from None
    load_translated(model, state, lambda key: reference_key(config, key), src, "a reference Wave-U-Net")
    step = training.get("step")
    model.metadata = {"imported_from": str(src), "step": int(step) if isinstance(step, numbers.Integral) else None}
    if dst is not None:
        save_model(model, dst, step=model.metadata["step"], metadata={"imported_from": src.name})
    return model


# --- writing one ---------------------------------------------------------------------------------


def _check_exportable(config: WaveUNetConfig) -> None:
    expected_activation = "leaky_relu" if config.norm == "none" else "relu"
    problems = [
        (config.layout != "pytorch", "layout must be pytorch"),
        (config.padding != "valid", "padding must be valid"),
        ((config.downsample, config.upsample) not in (("sinc", "sinc"), ("conv", "transposed")),
         "resampling must be sinc/sinc or conv/transposed"),
        (config.down_kernel != config.up_kernel, "down and up kernels must be equal"),
        (config.depth != 1, "depth must be 1"),
        (config.output != "direct" or config.output_activation != "linear", "the output must be direct and linear"),
        (config.activation != expected_activation, f"norm {config.norm} goes with {expected_activation}"),
        (config.activation == "leaky_relu" and config.negative_slope != LEAKY_SLOPE,
         f"the leaky ReLU slope must be {LEAKY_SLOPE}"),
        (config.norm == "group" and any(w % 8 for w in config.widths), "group norm needs widths divisible by 8"),
    ]
    for bad, reason in problems:
        if bad:
            raise WaveUNetError(f"model {config.name!r} has no PyTorch Wave-U-Net equivalent: {reason}")


def reference_state_dict(model: WaveUNet) -> dict[str, torch.Tensor]:
    """Our model's weights under the reference's state-dict keys."""
    _check_exportable(model.config)
    return {reference_key(model.config, k): v.detach().cpu().clone() for k, v in model.state_dict().items()}


def export_pytorch_checkpoint(model: WaveUNet, path: str | os.PathLike, *, step: int = 0) -> Path:
    """Write ``model`` as a PyTorch Wave-U-Net checkpoint (``model_state_dict``, empty optimiser state,
    ``state``), atomically. The reference needs the hyper-parameters separately: they are those of
    ``model.config`` (instruments, channels, features, levels = ``config.levels + 1``, ...)."""
    ckpt = {"model_state_dict": reference_state_dict(model), "optimizer_state_dict": {},
            "state": {"step": step}}
    atomic_torch_save(ckpt, path)
    return Path(path)


__all__ = ["import_pytorch_checkpoint", "export_pytorch_checkpoint", "infer_architecture", "reference_state_dict",
           "read_reference_state", "config_from_reference", "ReferenceArchitecture"]
