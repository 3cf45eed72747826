"""``waveunet info``: parameter counts and sizes of every preset (numbers from the specs and the
issue), checkpoints, ``--output-length``, and the MAC counter."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import waveunet
from waveunet.info import count_macs
from waveunet.blocks import SincResample
from waveunet.cli import main
from waveunet.models import PRESETS, WaveUNetConfig, build_model

from helpers import SPEC_NUMBERS

AUDIO = {name: numbers for name, numbers in SPEC_NUMBERS.items() if isinstance(PRESETS[name], WaveUNetConfig)}
IMAGE = {name: numbers for name, numbers in SPEC_NUMBERS.items() if not isinstance(PRESETS[name], WaveUNetConfig)}


def info_json(*args) -> dict:
    result = CliRunner().invoke(main, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_preset_is_covered():
    assert set(AUDIO) | set(IMAGE) == set(PRESETS)


@pytest.mark.parametrize("name", AUDIO)
def test_audio_presets(name):
    parameters, input_length, output_length = AUDIO[name]
    info = info_json(name)
    config = PRESETS[name]
    assert (info["parameters"], info["input_length"], info["output_length"]) == (parameters, input_length, output_length)
    assert info["sample_rate"] == config.sample_rate
    assert info["sources"] == list(config.sources) and info["channels"] == config.channels
    assert info["macs_per_second"] == round(info["macs"] * config.sample_rate / output_length) > 0
    if config.padding == "valid":
        assert info["context"] == (input_length - output_length) // 2
        assert info["receptive_field"] == input_length - output_length + 1
    else:  # same padding: no context needed, but the receptive field is that of the valid network
        assert info["context"] == 0 and info["receptive_field"] == info_json("M3")["receptive_field"]


def test_paper_context_numbers():
    info = info_json("M4")
    assert (info["context"], info["receptive_field"], info["length_step"]) == (65527, 131055, 4096)
    assert info_json("pytorch-default")["context"] == 4776


@pytest.mark.parametrize("name", IMAGE)
def test_image_presets(name):
    parameters, input_side, output_side = IMAGE[name]
    info = info_json(name)
    assert info["parameters"] == parameters
    if input_side is None:
        assert info["keeps_size"] and info["input_size"] == info["output_size"]
        assert info_json(name, "--output-length", "333")["input_size"] == [333, 333]
    else:
        assert (info["input_size"], info["output_size"]) == ([input_side] * 2, [output_side] * 2)
        assert info["receptive_field"] == input_side - output_side + 1
    assert info["in_channels"] == PRESETS[name].in_channels and info["classes"] == 2 and info["macs"] > 0


def test_output_length_picks_the_next_valid_length():
    info = info_json("M4", "--output-length", "20000")
    assert (info["input_length"], info["output_length"]) == (147443 + 4096, 16389 + 4096)
    # a longer window amortises the context: fewer MACs per second of audio
    assert info["macs_per_second"] < info_json("M4")["macs_per_second"]


def test_checkpoint_and_text_output(tmp_path):
    model = build_model("M4", levels=3, features=4, output_length=100)
    waveunet.save_model(model, tmp_path / "small.pt", step=42)
    info = info_json(str(tmp_path / "small.pt"))
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert (info["input_length"], info["output_length"]) == (model.input_length, model.output_length)
    assert info["step"] == 42 and info["checkpoint"] == str(tmp_path / "small.pt")
    text = CliRunner().invoke(main, ["info", str(tmp_path / "small.pt")]).output
    assert f"{info['parameters']:,}" in text and "receptive field" in text and "step 42" in text


def test_unknown_name_is_a_one_line_error():
    result = CliRunner().invoke(main, ["info", "M99"])
    assert result.exit_code == 1 and result.output.startswith("Error: M99") and result.output.count("\n") == 1


def test_mac_counts_by_hand():
    conv = nn.Conv1d(2, 3, 5)
    assert count_macs(conv, torch.empty(1, 2, 100, device="meta")) == 96 * 3 * 2 * 5
    up = nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2)
    assert count_macs(up, torch.empty(2, 4, 10)) == 2 * 4 * 10 * 3 * 3
    image = nn.Conv2d(3, 8, 3)
    assert count_macs(image, torch.empty(1, 3, 10, 12)) == 8 * 10 * 8 * 3 * 9
    # fixed filters: one tap product per output (down) or per padded input value (up), per channel
    assert count_macs(SincResample(4, 4), torch.empty(1, 4, 33)) == 4 * 9 * 15
    assert count_macs(SincResample(4, 4, up=True), torch.empty(1, 4, 9)) == 4 * (9 + 14) * 15
    # the whole network: sum over its layers (here checked on a one-level paper Wave-U-Net)
    model = build_model("M4", levels=1, features=2, output_length=10).eval()
    n = model.input_length
    down = (n - 14) * 2 * 2 * 15                    # conv 2 -> 2, kernel 15
    bottleneck = ((n - 14 + 1) // 2 - 14) * 2 * 4 * 15  # decimated, conv 2 -> 4
    m = model.output_length
    up = m * (4 + 2) * 2 * 5                         # conv on [skip, h] -> 2, kernel 5
    output = m * (2 + 2) * 2 * 1                     # [mixture, h] -> 2 channels x 1 source
    assert count_macs(model, torch.empty(1, 2, n)) == down + bottleneck + up + output


def test_info_without_a_model_lists_the_presets_with_what_they_are():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in PRESETS:
        assert any(line.split()[:1] == [name] for line in lines), name
    assert any(line.startswith("  M4 ") and "best singing-voice model" in line for line in lines)
    assert lines[-1].startswith("Bundled models: demo")
