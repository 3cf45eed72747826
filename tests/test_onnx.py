"""ONNX: export of every Wave-U-Net kind, parity with PyTorch over valid lengths and batches, the
metadata, separation through onnxruntime, and the CLI (needs the ``onnx`` extra, which CI installs)."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import waveunet  # noqa: E402
from waveunet import separation  # noqa: E402
from waveunet.audio import read_audio  # noqa: E402
from waveunet.cli import main  # noqa: E402
from waveunet.errors import WaveUNetError  # noqa: E402
from waveunet.export import export_onnx  # noqa: E402
from waveunet.models.config import config_from_dict  # noqa: E402
from waveunet.onnx_model import OnnxModel, load_onnx_model  # noqa: E402
from waveunet.resolve import resolve_model  # noqa: E402
from waveunet.separation import separate  # noqa: E402

EXAMPLE = waveunet.__file__.rsplit("/", 1)[0] + "/examples/80s-rock.flac"

#: every kind of Wave-U-Net the presets make, small (same and valid padding, direct and difference
#: outputs, linear and learned interpolation, mono and stereo, the PyTorch layout with sinc filters and
#: GroupNorm, one net per source)
SMALL = {
    "M1": dict(levels=3, features=4, output_length=256),
    "M3": dict(levels=3, features=4),
    "M5": dict(levels=4, features=4),
    "M6": dict(levels=3, features=4),
    "pytorch-default": dict(levels=2, features=4, output_length=2000),
    "group-norm": dict(levels=2, features=8, norm="group", output_length=2000),
}


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    source = resolve_model("demo")
    export_onnx(source.load(), path, metadata=source.metadata)
    return path


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def parity(model, path, steps=(0, 1, 5, 17), batches=(1, 3)):
    """Largest |onnxruntime - PyTorch| over valid lengths min + k * step and batch sizes."""
    run, worst = session(path), 0.0
    smallest, step = model.sizes(1).input_length, model.length_step
    for k in steps:
        for batch in batches:
            mixture = 0.3 * torch.randn(batch, model.config.channels, smallest + k * step)
            with torch.inference_mode():
                expected = model(mixture).numpy()
            got = run.run(["estimates"], {"mixture": mixture.numpy()})[0]
            assert got.shape == expected.shape == (batch, len(model.config.sources), model.config.channels,
                                                   model.output_length_for(smallest + k * step))
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def test_the_demo_model_matches_pytorch_on_several_valid_lengths_and_batches(demo_onnx):
    torch.manual_seed(0)
    assert parity(waveunet.load_model("demo"), demo_onnx) <= 1e-4


@pytest.mark.parametrize("name", list(SMALL))
def test_every_kind_of_wave_u_net_exports_with_parity(name, tmp_path):
    torch.manual_seed(0)
    options = dict(SMALL[name])
    preset = "pytorch-default" if name == "group-norm" else name
    model = waveunet.build_model(preset, **options).eval()
    done = export_onnx(model, tmp_path / "m.onnx")
    assert done.path.is_file() and done.max_abs_diff <= 1e-4
    assert parity(model, done.path) <= 1e-4


def test_the_metadata_says_what_the_model_computes_and_how_to_run_it(demo_onnx):
    model = waveunet.load_model("demo")
    props = {p.key: p.value for p in onnx.load(str(demo_onnx)).metadata_props}
    c = model.config
    smallest = model.sizes(1)
    assert props["sample_rate"] == "22050" and props["channels"] == "2"
    assert props["sources"] == "accompaniment,vocals"
    assert (props["input_length"], props["output_length"]) == (str(model.input_length), str(model.output_length))
    assert props["context"] == str(model.context) == str(smallest.context)
    assert props["length_step"] == str(model.length_step) == "64"
    assert (props["min_input_length"], props["min_output_length"]) == (str(smallest.input_length), str(smallest.output_length))
    assert props["valid_input_lengths"] == f"{smallest.input_length} + k * 64 for k >= 0"
    assert props["output_length_of_input"] == f"input_length - {2 * model.context}"
    assert "down-sampling grid" not in props["streaming"] and "length_step" in props["streaming"]
    assert config_from_dict(json.loads(props["waveunet.config"])) == c
    assert json.loads(props["waveunet.checkpoint_metadata"])["step"] == 220
    graph = onnx.load(str(demo_onnx)).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "input_length"]
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == 2


def test_the_onnx_model_looks_like_the_model_to_the_engine(demo_onnx):
    model, exported = waveunet.load_model("demo"), load_onnx_model(demo_onnx, "cpu")
    assert isinstance(exported, OnnxModel) and exported.config == model.config
    assert exported.metadata["step"] == 220 and exported.device == torch.device("cpu")
    assert (exported.input_length, exported.output_length, exported.context, exported.length_step) == \
        (model.input_length, model.output_length, model.context, model.length_step)
    for n in (1, 100, 4101, 10000):
        assert exported.sizes(n) == model.sizes(n)
    with pytest.raises(ValueError, match="not valid"):
        exported(torch.zeros(1, 2, model.input_length + 1))
    assert list(exported.parameters()) == []


def test_separation_through_onnxruntime_matches_pytorch(demo_onnx, monkeypatch):
    monkeypatch.setattr(separation.apply, "BLOCK_SECONDS", 0.5)  # streams through many blocks
    audio, rate = read_audio(EXAMPLE)
    song = audio[:, : 3 * rate]
    model, exported = waveunet.load_model("demo"), load_onnx_model(demo_onnx)
    for options in ({}, {"shifts": 2, "two_stems": "vocals"}):
        ours = separate(model, song, rate, window=2048, **options)
        theirs = separate(exported, song, rate, window=2048, **options)
        assert list(ours) == list(theirs)
        for stem in ours:
            assert (ours[stem] - theirs[stem]).abs().max() <= 1e-4


def test_cli_export_then_separate_with_the_onnx_file(tmp_path):
    out = tmp_path / "demo.onnx"
    result = CliRunner().invoke(main, ["export", "demo", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "22050 Hz" in result.output and "2035 + k * 64" in result.output and "matches PyTorch" in result.output
    song = tmp_path / "song.wav"
    audio, rate = read_audio(EXAMPLE)
    sf.write(str(song), audio[:, :rate].T.numpy(), rate, subtype="FLOAT")
    for model, folder in ((out, "onnx"), ("demo", "torch")):
        result = CliRunner().invoke(main, ["separate", str(song), "--model", str(model), "--out", str(tmp_path / folder),
                                           "--bits", "32", "--no-progress"])
        assert result.exit_code == 0, result.output
    for stem in ("accompaniment", "vocals"):
        onnx_stem, _ = sf.read(str(tmp_path / "onnx" / "song" / f"{stem}.wav"))
        torch_stem, _ = sf.read(str(tmp_path / "torch" / "song" / f"{stem}.wav"))
        assert np.abs(onnx_stem - torch_stem).max() <= 1e-4
    again = CliRunner().invoke(main, ["export", "demo", "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert CliRunner().invoke(main, ["export", "demo", "-o", str(out), "--force"]).exit_code == 0


@pytest.mark.parametrize("opset", [14, 20])
def test_the_oldest_and_newest_operator_sets(tmp_path, opset):
    torch.manual_seed(0)
    model = waveunet.build_model("pytorch-default", **SMALL["group-norm"]).eval()
    done = export_onnx(model, tmp_path / "m.onnx", opset=opset)
    assert onnx.load(str(done.path)).opset_import[0].version == opset
    assert parity(model, done.path, steps=(0, 4)) <= 1e-4
    with pytest.raises(WaveUNetError, match="opset 21: choose 14 to 20"):
        export_onnx(model, tmp_path / "n.onnx", opset=21)


def test_cli_export_of_a_preset_says_its_weights_are_random(tmp_path):
    result = CliRunner().invoke(main, ["export", "M3", "-o", str(tmp_path / "m3.onnx")])
    assert result.exit_code == 0, result.output
    assert "random" in result.output
    assert load_onnx_model(tmp_path / "m3.onnx").config == waveunet.build_model("M3").config


@pytest.mark.parametrize("args,message", [
    (["unet2d-padded", "-o", "x.onnx"], "unet2d-padded: a 2D U-Net (image) model, not a Wave-U-Net"),
    (["nothing", "-o", "x.onnx"], "nothing: no such model"),
    (["demo", "-o", "x.pt"], "x.pt: an ONNX file name ends in .onnx"),
    (["demo", "-o", "missing/x.onnx"], "output folder does not exist"),
])
def test_cli_export_refuses_bad_input_on_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_onnx_files_that_are_not_ours_are_one_line_errors(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(WaveUNetError, match="junk.onnx: not a readable ONNX model"):
        resolve_model(tmp_path / "junk.onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(WaveUNetError, match="other.onnx: an ONNX model without waveunet metadata"):
        resolve_model(tmp_path / "other.onnx")
    with pytest.raises(WaveUNetError, match="missing.onnx: no such ONNX file"):
        resolve_model(tmp_path / "missing.onnx")
    result = CliRunner().invoke(main, ["separate", "song.wav", "--model", str(tmp_path / "other.onnx")])
    assert result.exit_code == 1 and "Traceback" not in result.output and "without waveunet metadata" in result.output


def test_onnx_devices(demo_onnx):
    with pytest.raises(WaveUNetError, match="runs this ONNX model on cpu or cuda, not mps"):
        load_onnx_model(demo_onnx, "mps")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert load_onnx_model(demo_onnx, "auto").device == torch.device("cpu")
        with pytest.raises(WaveUNetError, match="no CUDA provider"):
            load_onnx_model(demo_onnx, "cuda")
