"""Checkpoints written by waveunet 0.1.0 (format 1, positional state-dict keys) keep loading, and the
models they rebuild compute what that version computed.

The fixtures in ``tests/data/checkpoints/v1`` were written by that version itself (commit 7868923,
``generate.py`` there): one small model per structural variant with every weight and BatchNorm
statistic drawn at random, an input and that version's output for each, and the bundled demo model
with its separation of the first half second of the bundled example.
"""

from pathlib import Path

import pytest
import torch

import waveunet
from waveunet.checkpoint import FORMAT_VERSION, read_checkpoint, save_model
from waveunet.models import WaveUNetConfig

V1 = Path(__file__).parent / "data" / "checkpoints" / "v1"
OUTPUTS = torch.load(V1 / "outputs.pt", weights_only=True)
VARIANTS = sorted(name for name in OUTPUTS if name != "demo-excerpt")


def test_every_fixture_has_its_reference_output():
    assert sorted(p.stem for p in V1.glob("*.pt") if p.stem not in ("outputs", "demo")) == VARIANTS
    assert len(VARIANTS) == 8
    for name in VARIANTS:
        assert torch.load(V1 / f"{name}.pt", weights_only=True)["format_version"] == 1


@pytest.mark.parametrize("name", VARIANTS)
def test_format_1_checkpoints_compute_what_they_computed(name):
    model = waveunet.load_model(V1 / f"{name}.pt")
    reference = OUTPUTS[name]
    with torch.no_grad():
        output = model(reference["input"])
    assert output.shape == reference["output"].shape
    assert (output - reference["output"]).abs().max() <= 1e-6
    assert model.metadata["fixture"] == name and model.metadata["step"] == 7


@pytest.mark.parametrize("name", VARIANTS)
def test_renamed_keys_keep_the_parameter_order(name):
    """Optimiser states are saved by parameter position: a format-1 ``last.pt`` resumes only if the
    renamed parameters come in the order the new model registers them."""
    old = torch.load(V1 / f"{name}.pt", weights_only=True)["state_dict"]
    upgraded = read_checkpoint(V1 / f"{name}.pt")["state_dict"]
    model = waveunet.load_model(V1 / f"{name}.pt")
    assert list(upgraded) == list(model.state_dict())
    assert [tuple(v.shape) for v in old.values()] == [tuple(v.shape) for v in model.state_dict().values()]
    parameters = [k for k, _ in model.named_parameters()]
    assert [k for k in upgraded if k in parameters] == parameters


def test_format_1_demo_separates_exactly_as_before():
    reference = OUTPUTS["demo-excerpt"]
    for path in (V1 / "demo.pt", "demo"):  # the fixture copy and the bundled file
        model = waveunet.load_model(path)
        # difference="model": the model's own difference source, as separation gave it then (issue 11 made the
        # default "input": that source is now the input minus the others at the input's rate)
        stems = waveunet.separate(model, reference["input"], reference["sample_rate"], device="cpu", difference="model")
        output = torch.stack([stems[s] for s in model.config.sources])
        assert (output - reference["output"]).abs().max() <= 1e-6
        summed = waveunet.separate(model, reference["input"], reference["sample_rate"], device="cpu")
        assert (summed["accompaniment"] - reference["output"][0]).abs().max() <= 1e-6  # the estimated source: as then
        assert (summed["vocals"] - (reference["input"] - summed["accompaniment"])).abs().max() <= 1e-6


def test_new_checkpoints_are_format_2_with_keys_that_read_like_the_architecture(tmp_path):
    model = waveunet.load_model(V1 / "pytorch-learned-batch.pt")
    path = save_model(model, tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format_version"] == FORMAT_VERSION == 2
    keys = set(ckpt["state_dict"])
    assert {"nets.all.unet.down.0.stage.0.conv.weight", "nets.all.unet.down.0.post_stage.0.norm.running_mean",
            "nets.all.unet.down.0.resample.conv.weight", "nets.all.unet.bottleneck.1.conv.weight",
            "nets.all.unet.up.0.resample.conv.weight", "nets.all.unet.up.0.pre_stage.0.conv.weight",
            "nets.all.unet.up.1.stage.0.norm.weight", "nets.all.output.conv.weight"} <= keys
    assert not any(part.isdigit() and later.isdigit() for key in keys
                   for part, later in zip(key.split("."), key.split(".")[1:]))  # no index right after an index
    again = waveunet.load_model(path)
    x = OUTPUTS["pytorch-learned-batch"]["input"]
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_unet2d_keys_read_like_the_architecture():
    keys = set(waveunet.build_model("unet2d-padded", levels=2, features=4, skip_pooled=False, merge="pad").state_dict())
    assert {"unet.down.0.stage.0.conv.weight", "unet.down.0.stage.1.norm.running_var", "unet.bottleneck.3.conv.weight",
            "unet.up.1.resample.conv.weight", "classifier.conv.bias"} <= keys
    keys = set(waveunet.build_model("unet2d-padded", levels=2, features=4).state_dict())  # pooled skips
    assert {"unet.bottleneck.stage.0.conv.weight", "unet.bottleneck.post_stage.1.norm.bias"} <= keys


def test_a_newer_format_is_refused(tmp_path):
    path = save_model(waveunet.build_model(WaveUNetConfig(levels=2, features=2)), tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, path)
    with pytest.raises(waveunet.WaveUNetError, match="newer than this waveunet understands"):
        waveunet.load_model(path)
