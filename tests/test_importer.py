"""Importing (and exporting) checkpoints of the PyTorch Wave-U-Net re-implementation.

``Reference`` below re-states that implementation from ``docs/specs/wave-u-net-pytorch.md``
(module names, state-dict layout and forward pass), independently of our blocks, so that the
importer is checked against the reference's own arithmetic and not only against itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import waveunet
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.importer import export_pytorch_checkpoint, import_pytorch_checkpoint, reference_state_dict
from waveunet.models import build_model

# --- the reference, as its spec states it ----------------------------------------------------------


def spec_sinc_filter(stride: int, taps: int = 15) -> np.ndarray:
    m, fc = taps - 1, 0.5 / stride
    h = np.zeros(taps)
    for i in range(taps):
        if i == m // 2:
            h[i] = 2 * np.pi * fc
        else:
            h[i] = np.sin(2 * np.pi * fc * (i - m / 2)) / (i - m / 2)
            h[i] *= 0.42 - 0.5 * np.cos(2 * np.pi * i / m) + 0.08 * np.cos(4 * np.pi * m)
    return (h / h.sum()).astype(np.float32)


class RefConvLayer(nn.Module):
    def __init__(self, n_in, n_out, k, stride, conv_type, transpose=False):
        super().__init__()
        self.conv_type = conv_type
        self.filter = (nn.ConvTranspose1d(n_in, n_out, k, stride, padding=k - 1) if transpose
                       else nn.Conv1d(n_in, n_out, k, stride))
        if conv_type == "gn":
            self.norm = nn.GroupNorm(n_out // 8, n_out)
        elif conv_type == "bn":
            self.norm = nn.BatchNorm1d(n_out, momentum=0.01)

    def forward(self, x):
        if self.conv_type == "normal":
            return F.leaky_relu(self.filter(x))
        return F.relu(self.norm(self.filter(x)))


class RefResample1d(nn.Module):
    def __init__(self, channels, stride, transpose=False):
        super().__init__()
        self.stride, self.transpose, self.channels = stride, transpose, channels
        h = torch.from_numpy(spec_sinc_filter(stride)).reshape(1, 1, 15).repeat(channels, 1, 1)
        self.filter = nn.Parameter(h, requires_grad=False)

    def forward(self, x):
        n = x.shape[2]
        out = F.pad(x, (7, 7), mode="reflect")
        if self.transpose:
            out = F.conv_transpose1d(out, self.filter, stride=self.stride, groups=self.channels)
            diff = out.shape[2] - ((n - 1) * self.stride + 1)
            return out[:, :, diff // 2: out.shape[2] - diff // 2]
        assert n % self.stride == 1
        return F.conv1d(out, self.filter, stride=self.stride, groups=self.channels)


def ref_crop(x, target):
    diff = x.shape[-1] - target.shape[-1]
    assert diff % 2 == 0
    return x if diff == 0 else x[:, :, diff // 2: -(diff // 2)]


class RefDown(nn.Module):
    def __init__(self, n_in, n_short, n_out, k, stride, conv_type, res):
        super().__init__()
        self.pre_shortcut_convs = nn.ModuleList([RefConvLayer(n_in, n_short, k, 1, conv_type)])
        self.post_shortcut_convs = nn.ModuleList([RefConvLayer(n_short, n_out, k, 1, conv_type)])
        self.downconv = (RefResample1d(n_out, stride) if res == "fixed"
                         else RefConvLayer(n_out, n_out, k, stride, conv_type))

    def forward(self, x):
        short = self.pre_shortcut_convs[0](x)
        return self.downconv(self.post_shortcut_convs[0](short)), short


class RefUp(nn.Module):
    def __init__(self, n_in, n_short, n_out, k, stride, conv_type, res):
        super().__init__()
        self.upconv = (RefResample1d(n_in, stride, transpose=True) if res == "fixed"
                       else RefConvLayer(n_in, n_in, k, stride, conv_type, transpose=True))
        self.pre_shortcut_convs = nn.ModuleList([RefConvLayer(n_in, n_out, k, 1, conv_type)])
        self.post_shortcut_convs = nn.ModuleList([RefConvLayer(n_out + n_short, n_out, k, 1, conv_type)])

    def forward(self, x, shortcut):
        up = self.pre_shortcut_convs[0](self.upconv(x))
        combined = ref_crop(shortcut, up)
        return self.post_shortcut_convs[0](torch.cat([combined, ref_crop(up, combined)], dim=1))


class RefNet(nn.Module):
    def __init__(self, channels, widths, k, stride, conv_type, res, outputs):
        super().__init__()
        n = len(widths)
        self.downsampling_blocks = nn.ModuleList(
            RefDown(channels if i == 0 else widths[i], widths[i], widths[i + 1], k, stride, conv_type, res)
            for i in range(n - 1))
        self.bottlenecks = nn.ModuleList([RefConvLayer(widths[-1], widths[-1], k, 1, conv_type)])
        self.upsampling_blocks = nn.ModuleList(
            RefUp(widths[-1 - i], widths[-2 - i], widths[-2 - i], k, stride, conv_type, res) for i in range(n - 1))
        self.output_conv = nn.Conv1d(widths[0], outputs, 1)

    def forward(self, x):
        shortcuts = []
        for block in self.downsampling_blocks:
            x, short = block(x)
            shortcuts.append(short)
        x = self.bottlenecks[0](x)
        for block, short in zip(self.upsampling_blocks, reversed(shortcuts)):
            x = block(x, short)
        out = self.output_conv(x)
        return out if self.training else out.clamp(-1.0, 1.0)


class Reference(nn.Module):
    """The reference ``Waveunet``: ``forward(x) -> {instrument: [batch, channels, T']}``."""

    def __init__(self, instruments, channels=2, features=8, levels=3, growth="double", kernel=5, strides=4,
                 conv_type="gn", res="fixed", separate=True):
        super().__init__()
        widths = [features * 2**i if growth == "double" else features * (i + 1) for i in range(levels)]
        self.instruments, self.channels, self.separate = instruments, channels, separate
        nets = instruments if separate else ["ALL"]
        outputs = channels if separate else channels * len(instruments)
        self.waveunets = nn.ModuleDict({name: RefNet(channels, widths, kernel, strides, conv_type, res, outputs)
                                        for name in nets})

    def forward(self, x):
        if self.separate:
            return {name: self.waveunets[name](x) for name in self.instruments}
        out = self.waveunets["ALL"](x)
        return {name: out[:, i * self.channels:(i + 1) * self.channels] for i, name in enumerate(self.instruments)}


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (norm affine and running statistics too), except fixed filters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("filter") and not name.endswith(".filter"):
                values = torch.rand(tensor.shape, generator=generator) * 0.4 + 0.8 if "running_var" in name \
                    else torch.randn(tensor.shape, generator=generator) * 0.3
                tensor.copy_(values)
    return model


def save_reference(model: nn.Module, path, prefix: str = "") -> None:
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}, "state": {"step": 1234}}, path)


# --- the spec's example -------------------------------------------------------------------------------

SPEC_EXAMPLE = dict(instruments=["bass", "vocals"], channels=2, features=8, levels=3, kernel=5, strides=4,
                    conv_type="gn", res="fixed", separate=True)


def spec_example_keys() -> dict[str, tuple[int, ...]]:
    """Every key and shape of one network of the spec's example, its "same pattern" written out."""
    keys = {}

    def layer(prefix, n_in, n_out, k=5):
        keys[f"{prefix}.filter.weight"] = (n_out, n_in, k)
        keys[f"{prefix}.filter.bias"] = (n_out,)
        keys[f"{prefix}.norm.weight"] = (n_out,)
        keys[f"{prefix}.norm.bias"] = (n_out,)

    layer("downsampling_blocks.0.pre_shortcut_convs.0", 2, 8)
    layer("downsampling_blocks.0.post_shortcut_convs.0", 8, 16)
    keys["downsampling_blocks.0.downconv.filter"] = (16, 1, 15)
    layer("downsampling_blocks.1.pre_shortcut_convs.0", 16, 16)
    layer("downsampling_blocks.1.post_shortcut_convs.0", 16, 32)
    keys["downsampling_blocks.1.downconv.filter"] = (32, 1, 15)
    keys["upsampling_blocks.0.upconv.filter"] = (32, 1, 15)
    layer("upsampling_blocks.0.pre_shortcut_convs.0", 32, 16)
    layer("upsampling_blocks.0.post_shortcut_convs.0", 32, 16)
    keys["upsampling_blocks.1.upconv.filter"] = (16, 1, 15)
    layer("upsampling_blocks.1.pre_shortcut_convs.0", 16, 8)
    layer("upsampling_blocks.1.post_shortcut_convs.0", 16, 8)
    layer("bottlenecks.0", 32, 32)
    keys["output_conv.weight"] = (2, 8, 1)
    keys["output_conv.bias"] = (2,)
    return keys


def spec_example_model():
    """Our model of the spec's example (our levels count the down-sampling steps: reference levels - 1)."""
    return build_model("pytorch-default", sources=("bass", "vocals"), features=8, levels=2, output_length=4000)


def test_export_writes_every_key_and_shape_of_the_spec_example():
    state = reference_state_dict(spec_example_model())
    expected = {f"waveunets.{name}.{k}": shape for name in ("bass", "vocals") for k, shape in spec_example_keys().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_spec_example_sizes_and_reference_layout_agree(tmp_path):
    ours = spec_example_model()
    assert (ours.input_length, ours.output_length) == (4153, 4009)
    reference = Reference(**SPEC_EXAMPLE)
    assert {k: tuple(v.shape) for k, v in reference.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference_state_dict(ours).items()}


def test_reference_sinc_filter_is_ours():
    from waveunet.blocks import sinc_lowpass

    for stride in (2, 4, 8):
        assert torch.allclose(sinc_lowpass(stride), torch.from_numpy(spec_sinc_filter(stride)), atol=1e-7)


# --- imported models compute exactly what the reference computes ------------------------------------

VARIANTS = {
    "spec-example": dict(SPEC_EXAMPLE),
    "bn-learned": dict(SPEC_EXAMPLE, conv_type="bn", res="learned"),
    "normal-fixed-shared": dict(SPEC_EXAMPLE, conv_type="normal", separate=False,
                                instruments=["bass", "drums", "other", "vocals"]),
    "gn-learned-add-mono": dict(SPEC_EXAMPLE, channels=1, growth="add", res="learned", strides=2, levels=4),
    "bn-fixed-shared-stride2": dict(SPEC_EXAMPLE, conv_type="bn", separate=False, strides=2, features=16),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_model_equals_the_reference(variant, tmp_path):
    options = VARIANTS[variant]
    reference = randomise(Reference(**options)).eval()
    save_reference(reference, tmp_path / "ref.pth", prefix="module.")  # as saved from DataParallel
    strides = None if options["res"] == "fixed" else options["strides"]
    instruments = None if options["separate"] or len(options["instruments"]) == 4 else options["instruments"]
    model = import_pytorch_checkpoint(tmp_path / "ref.pth", tmp_path / "ours.pt", strides=strides,
                                      instruments=instruments, output_size=1500 / 44100)
    c = model.config
    assert (c.channels, c.levels + 1, c.features, c.resample_factor) == \
        (options["channels"], options["levels"], options["features"], options["strides"])
    assert c.norm == {"gn": "group", "bn": "batch", "normal": "none"}[options["conv_type"]]
    assert c.separate == options["separate"] and list(c.sources) == options["instruments"]
    assert model.metadata["step"] == 1234

    x = torch.randn(2, options["channels"], model.input_length) * 0.5
    with torch.no_grad():
        expected = reference(x)
        ours = model(x)
        reloaded = waveunet.load_model(tmp_path / "ours.pt")(x)
    for i, name in enumerate(c.sources):
        assert torch.equal(ours[:, i], expected[name]), name
    assert torch.equal(reloaded, ours)


@pytest.mark.parametrize("overrides", [
    {},
    dict(norm="batch", norm_momentum=0.01),
    dict(norm="none", activation="leaky_relu", negative_slope=0.01, separate=False),
    dict(downsample="conv", upsample="transposed", growth="add", resample_factor=2),
])
def test_export_then_import_round_trip(overrides, tmp_path):
    config = dict(sources=("bass", "drums", "other", "vocals"), features=8, levels=3, output_length=2000)
    model = randomise(build_model("pytorch-default", **config, **overrides), seed=1).eval()
    export_pytorch_checkpoint(model, tmp_path / "ref.pth", step=7)
    strides = overrides.get("resample_factor")
    back = import_pytorch_checkpoint(tmp_path / "ref.pth", output_size=2000 / 44100, strides=strides)
    x = torch.randn(1, 2, model.input_length)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.config.separate == model.config.separate and back.config.growth == model.config.growth
    assert back.metadata["step"] == 7


def test_default_preset_round_trips_with_the_reference_parameter_count(tmp_path):
    model = build_model("pytorch-default")
    export_pytorch_checkpoint(model, tmp_path / "ref.pth")
    state = torch.load(tmp_path / "ref.pth", weights_only=True)["model_state_dict"]
    assert sum(v.numel() for k, v in state.items() if "running" not in k) == 70_148_232
    back = import_pytorch_checkpoint(tmp_path / "ref.pth")
    assert back.config == model.config.__class__(**{**model.config.__dict__, "name": back.config.name})
    assert (back.input_length, back.output_length) == (97961, 88409)


# --- options and refusals -------------------------------------------------------------------------------


def test_options_the_file_cannot_tell(tmp_path):
    reference = Reference(**dict(SPEC_EXAMPLE, res="learned"))
    save_reference(reference, tmp_path / "ref.pth")
    model = import_pytorch_checkpoint(tmp_path / "ref.pth", sample_rate=22050, strides=2, output_size=0.5,
                                      instruments=["vocals", "bass"])
    assert model.config.sample_rate == 22050 and model.config.resample_factor == 2
    assert model.config.sources == ("vocals", "bass")
    assert model.output_length >= 11025
    assert import_pytorch_checkpoint(tmp_path / "ref.pth").config.resample_factor == 4  # the reference default


def refusal(path, **options) -> str:
    with pytest.raises(WaveUNetError) as info:
        import_pytorch_checkpoint(path, **options)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_refuses_files_that_are_not_reference_checkpoints(tmp_path):
    (tmp_path / "text.pth").write_text("hello")
    assert "not a readable" in refusal(tmp_path / "text.pth")
    assert "no such file" in refusal(tmp_path / "missing.pth")
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    assert "not a PyTorch Wave-U-Net checkpoint" in refusal(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    assert "not a PyTorch Wave-U-Net checkpoint" in refusal(tmp_path / "list.pth")
    waveunet.save_model(spec_example_model(), tmp_path / "ours.pt")
    assert "already a waveunet checkpoint" in refusal(tmp_path / "ours.pt")


def test_training_state_with_numpy_scalars_is_read_but_not_arbitrary_objects(tmp_path):
    import datetime

    state = Reference(**SPEC_EXAMPLE).state_dict()
    torch.save({"model_state_dict": state, "state": {"step": np.int64(99), "best_loss": np.float64(0.1)}},
               tmp_path / "ref.pth")
    assert import_pytorch_checkpoint(tmp_path / "ref.pth").metadata["step"] == 99
    torch.save({"model_state_dict": state, "state": {"when": datetime.datetime(2020, 1, 1)}}, tmp_path / "obj.pth")
    assert "Python objects" in refusal(tmp_path / "obj.pth")


@pytest.mark.parametrize("module", [b"numpy.core.multiarray", b"numpy._core.multiarray"])
def test_numpy_scalars_pickled_under_numpy_1_or_2_are_read(tmp_path, module):
    """Reference checkpoints saved under NumPy 1 name the scalar reconstructor
    ``numpy.core.multiarray.scalar``, under NumPy 2 ``numpy._core.multiarray.scalar``: both load,
    whichever NumPy runs here."""
    import re
    import zipfile

    path = tmp_path / "ref.pth"
    torch.save({"model_state_dict": Reference(**SPEC_EXAMPLE).state_dict(), "state": {"step": np.int64(42)}}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {info: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries.items():
            if info.filename.endswith("data.pkl"):  # protocol 2: GLOBAL opcodes name the module as text
                data = re.sub(rb"numpy\.(_)?core\.multiarray\n", module + b"\n", data)
                assert module + b"\nscalar" in data
            archive.writestr(info, data)
    assert import_pytorch_checkpoint(path).metadata["step"] == 42


def test_refuses_weights_that_do_not_fit(tmp_path):
    reference = Reference(**SPEC_EXAMPLE)
    state = reference.state_dict()

    def save(changed):
        torch.save({"model_state_dict": changed}, tmp_path / "bad.pth")
        return tmp_path / "bad.pth"

    key = "waveunets.vocals.upsampling_blocks.0.post_shortcut_convs.0.filter.weight"
    assert "has shape" in refusal(save({**state, key: torch.zeros(16, 31, 5)}))
    assert "missing" in refusal(save({k: v for k, v in state.items() if k != key}))
    assert "unexpected" in refusal(save({**state, "waveunets.bass.extra.weight": torch.zeros(1)}))
    bent = {**state, "waveunets.bass.downsampling_blocks.0.downconv.filter": torch.rand(16, 1, 15)}
    assert "sinc low-pass" in refusal(save(bent))
    assert "resample by 4" in refusal(save(state), strides=2)
    assert "not the instruments given" in refusal(save(state), instruments=["drums", "vocals"])

    shared = Reference(**dict(SPEC_EXAMPLE, separate=False)).state_dict()  # 2 instruments, not the default 4
    assert "pass the instruments" in refusal(save(shared))
    assert "only depth 1" in refusal(save({**state, "waveunets.bass.bottlenecks.1.filter.weight": torch.zeros(1)}))


def test_export_refuses_models_without_a_reference_equivalent(tmp_path):
    with pytest.raises(WaveUNetError, match="no PyTorch Wave-U-Net equivalent"):
        export_pytorch_checkpoint(build_model("M4"), tmp_path / "m4.pth")
    assert not (tmp_path / "m4.pth").exists()


# --- the command ------------------------------------------------------------------------------------------


def test_command_imports_and_reports(tmp_path):
    save_reference(Reference(**SPEC_EXAMPLE), tmp_path / "ref.pth")
    result = CliRunner().invoke(main, ["import-checkpoint", str(tmp_path / "ref.pth"), "-o", str(tmp_path / "ours.pt"),
                                       "--sample-rate", "22050", "--output-size", "1"])
    assert result.exit_code == 0, result.output
    assert "bass, vocals" in result.output
    model = waveunet.load_model(tmp_path / "ours.pt")
    assert model.config.sample_rate == 22050 and model.metadata["imported_from"] == "ref.pth"


def test_command_error_is_one_line(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 10)
    result = CliRunner().invoke(main, ["import-checkpoint", str(tmp_path / "junk.pth"), "-o", str(tmp_path / "o.pt")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "o.pt").exists()
