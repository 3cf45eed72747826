"""The U-Net with a ResNet encoder: parameter counts (docs/specs/unet-resnet.md), any input size,
the decoder from the blocks, configs and checkpoints, pretrained encoders (never downloaded here),
and overlap-tile segmentation against a whole pass."""

from __future__ import annotations

import json
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import waveunet
from waveunet.blocks import ConvStage, ExpandingPath, InterpolateConcat, TransposedUpsample, UpBlock
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.image.data import read_image
from waveunet.image.segment import image_tiling, segment
from waveunet.models import PRESETS, UNetResnet, UNetResnetConfig, build_model, config_from_dict, config_to_dict
from waveunet.models.pretrained import adapt_first_conv
from waveunet.models.registry import model_from_config
from waveunet.resolve import KINDS, check_kind, resolve_model

ISBI = Path(__file__).resolve().parents[1] / "data" / "isbi2012-em" / "train" / "images"
TORCHVISION = dict(deep_stem=False, dilated=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here may download: torch hub's downloader fails as it does without a network."""
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def meta(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, **overrides)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small(encoder="resnet18", **overrides) -> UNetResnet:
    torch.manual_seed(0)
    return model_from_config(UNetResnetConfig(encoder=encoder, **overrides)).eval()


# ------------------------------------------------------------------ the architecture


@pytest.mark.parametrize("name, faithful, torchvision", [
    ("unet-resnet50", 29_999_920, 29_876_144),
    ("unet-resnet101", 48_992_048, 48_868_272),
    ("unet-resnet152", 64_635_696, 64_511_920),
])
def test_parameter_counts_of_the_spec(name, faithful, torchvision):
    model = meta(name)
    assert count(model) == faithful and model.config.deep_stem and model.config.dilated
    assert count(meta(name, **TORCHVISION)) == torchvision
    info = json.loads(CliRunner().invoke(main, ["info", name, "--json"]).output)
    assert info["parameters"] == faithful and info["output_stride"] == 8 and info["keeps_size"]


def test_info_lists_the_new_presets_with_what_they_are():
    lines = CliRunner().invoke(main, ["info"]).output.splitlines()
    for name in ("unet-resnet50", "unet-resnet101", "unet-resnet152"):
        line = next(line for line in lines if line.split()[:1] == [name])
        assert "ResNet" in line and "dilated" in line


def test_the_encoder_is_the_original_s_deep_stem_dilated_resnet():
    encoder = meta("unet-resnet50").encoder
    stem = [m for m in encoder.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in stem] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert encoder.bn1.num_features == 128 and encoder.layer1[0].downsample[0].in_channels == 128
    assert [block.conv2.dilation[0] for block in encoder.layer3] == [1] + [2] * 5
    assert [block.conv2.dilation[0] for block in encoder.layer4] == [2, 4, 4]
    assert all(block.conv2.stride[0] == 1 for block in (*encoder.layer3, *encoder.layer4))
    with torch.no_grad():  # the spec's example: a 128x96 input has layer1 at 32x24 and layers 2-4 at 16x12
        shapes = [tuple(x.shape[-2:]) for x in small("resnet50", deep_stem=True, dilated=True).encoder(torch.rand(1, 3, 128, 96))]
    assert shapes == [(32, 24), (16, 12), (16, 12), (16, 12)]


def test_the_decoder_is_assembled_from_the_blocks_with_widths_from_the_encoder():
    for encoder, widths in (("resnet18", (64, 128, 256, 512)), ("resnet50", (256, 512, 1024, 2048))):
        model = meta("unet-resnet50", encoder=encoder, **TORCHVISION)
        assert model.encoder.widths == list(widths)
        decoder = model.decoder
        assert isinstance(decoder, ExpandingPath) and isinstance(decoder.bottleneck, ConvStage)
        assert decoder.bottleneck[0].conv.in_channels == widths[3]
        for block, skip, (n_in, n_out) in zip(decoder.up, reversed(widths[:3]), ((192, 128), (128, 96), (96, 64))):
            assert isinstance(block, UpBlock) and isinstance(block.resample, TransposedUpsample)
            assert isinstance(block.merge, InterpolateConcat) and not block.merge.skip_first
            assert (block.resample.conv.in_channels, block.resample.conv.out_channels) == (n_in, n_out)
            assert block.resample.conv.kernel_size == (4, 4) and block.resample.conv.bias is None
            assert block.stage[0].conv.in_channels == n_out + skip
        # no normalisation, no non-linearity in the decoder, as written
        assert not [m for m in (*decoder.modules(), *model.head.modules(), *model.classifier.modules())
                    if isinstance(m, (nn.BatchNorm2d, nn.ReLU))]


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (37, 53), (64, 96), (129, 77)])
def test_the_output_has_the_input_size_for_any_size(size):
    for model in (small(), small("resnet50", deep_stem=True, dilated=True)):
        with torch.no_grad():
            assert model(torch.rand(1, 3, *size)).shape == (1, 2, *size)


@pytest.mark.parametrize("channels", [1, 4])
def test_other_channel_counts_work_with_the_deep_stem(channels):
    model = small("resnet50", deep_stem=True, dilated=True, in_channels=channels, classes=3)
    assert model.encoder.first_conv.in_channels == channels and model.encoder.bn1.num_features == 128
    with torch.no_grad():
        assert model(torch.rand(2, channels, 40, 30)).shape == (2, 3, 40, 30)


def test_gradient_reaches_every_parameter_and_the_options_add_norm_and_relu():
    model = small(decoder_norm="batch", decoder_activation="relu").train()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules())
    model(torch.rand(2, 3, 48, 40)).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_configs_round_trip_and_the_resolver_knows_their_kind(tmp_path):
    config = UNetResnetConfig(encoder="resnet34", in_channels=1, classes=4, input_mean=[0.5], input_std=[0.2],
                              encoder_weights="imagenet", name="x")
    assert config_from_dict(config_to_dict(config)) == config and config.input_mean == (0.5,)
    assert config_to_dict(config)["kind"] == "unet-resnet" and KINDS["unet-resnet"][0] == "image"
    for preset in ("unet-resnet50", "unet-resnet152"):
        assert config_from_dict(config_to_dict(PRESETS[preset])) == PRESETS[preset]
    model = small(in_channels=1)
    path = waveunet.save_model(model, tmp_path / "model.pt")
    loaded = resolve_model(path, kind="image").load()
    image = torch.rand(1, 1, 50, 45)
    with torch.no_grad():
        assert torch.equal(loaded(image), model(image))
    with pytest.raises(WaveUNetError, match="a U-Net with a ResNet encoder \\(image\\) model, not a Wave-U-Net"):
        check_kind(model.config, "audio", "model.pt")
    with pytest.raises(WaveUNetError, match="UNetResnetConfig.dilated needs a bottleneck encoder"):
        build_model("unet-resnet50", encoder="resnet18")
    with pytest.raises(WaveUNetError, match="input_mean and input_std need one value per input channel"):
        build_model("unet-resnet50", input_mean=[0.5], input_std=[0.5])


def test_the_receptive_field_is_that_of_its_layers():
    # resnet18: 7x7 stem (s2), max-pool 3 (s2), 16 3x3 convs, then the decoder's layers
    assert small().receptive_field == meta("unet-resnet50", encoder="resnet18", **TORCHVISION).receptive_field > 400


# ------------------------------------------------------------------ pretrained encoders


def hub_file(home: Path, encoder: str) -> Path:
    from torchvision.models import get_model_weights

    return home / "hub" / "checkpoints" / Path(get_model_weights(encoder).DEFAULT.url).name


def torchvision_weights(encoder: str, seed: int = 5) -> dict:
    import torchvision

    torch.manual_seed(seed)
    return getattr(torchvision.models, encoder)().state_dict()  # random, not ImageNet: what matters is that they load


def test_imagenet_weights_come_from_the_hub_cache_and_are_not_reinitialised(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision_weights("resnet18")
    hub_file(tmp_path, "resnet18").parent.mkdir(parents=True)
    torch.save(weights, hub_file(tmp_path, "resnet18"))
    model = build_model("unet-resnet50", encoder="resnet18", encoder_weights="imagenet", **TORCHVISION)
    ours = model.encoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in weights.items() if not k.startswith("fc."))
    assert set(ours) == {k for k in weights if not k.startswith("fc.")}


def test_offline_without_the_file_is_one_error_saying_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WaveUNetError) as caught:
        build_model("unet-resnet50", encoder="resnet34", encoder_weights="imagenet", **TORCHVISION)
    message = str(caught.value)
    assert "\n" not in message and "Temporary failure in name resolution" in message
    assert "ResNet34_Weights.IMAGENET1K_V1" in message and f"put it at {hub_file(tmp_path, 'resnet34')}" in message
    assert "https://download.pytorch.org/models/resnet34" in message


def test_first_conv_adaptation():
    rgb = torch.randn(64, 3, 7, 7)
    assert torch.equal(adapt_first_conv(rgb, 1), rgb.sum(1, keepdim=True))
    four = adapt_first_conv(rgb, 4)
    assert torch.allclose(four, torch.cat([rgb, rgb[:, :1]], 1) * 0.75)
    # a grey image seen through the adapted kernels gives what the RGB kernels give for it
    grey = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(nn.functional.conv2d(grey, adapt_first_conv(rgb, 1)),
                               nn.functional.conv2d(grey.expand(1, 3, 20, 20), rgb))
    torch.testing.assert_close(nn.functional.conv2d(grey.expand(1, 6, 20, 20), adapt_first_conv(rgb, 6)),
                               nn.functional.conv2d(grey.expand(1, 3, 20, 20), rgb), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 5])
def test_a_local_file_loads_with_its_first_conv_adapted_to_the_channels(tmp_path, channels):
    weights = torchvision_weights("resnet18")
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "r18.pth")
    model = build_model("unet-resnet50", encoder="resnet18", in_channels=channels,
                        encoder_weights=str(tmp_path / "r18.pth"), **TORCHVISION)
    assert torch.equal(model.encoder.conv1.weight, adapt_first_conv(weights["conv1.weight"], channels))
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, weights["layer4.1.bn2.running_var"])
    # our own checkpoint is a weights file too: its encoder is taken
    path = waveunet.save_model(model, tmp_path / "ours.pt")
    again = build_model(model.config, encoder_weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(again.encoder.state_dict().values(), model.encoder.state_dict().values()))


def test_a_deep_stem_keeps_what_a_7x7_stem_file_cannot_fill_and_says_so(tmp_path):
    weights = torchvision_weights("resnet50")
    torch.save(weights, tmp_path / "r50.pth")
    with pytest.warns(UserWarning, match="kept their random initialisation") as caught:
        model = build_model("unet-resnet50", encoder_weights=str(tmp_path / "r50.pth"))
    assert "deep stem (conv1.0.weight" in str(caught[0].message)
    ours = model.encoder.state_dict()
    kept = [k for k in ours if k not in weights or ours[k].shape != weights[k].shape]
    assert kept and all(k.startswith(("conv1.", "bn1.", "layer1.0.conv1.", "layer1.0.downsample.0.")) for k in kept)
    assert all(torch.equal(ours[k], weights[k]) for k in ours if k not in kept)


def test_files_of_another_network_are_one_clear_error(tmp_path):
    torch.save(torchvision_weights("resnet34"), tmp_path / "r34.pth")
    with pytest.raises(WaveUNetError, match=r"r34.pth: does not fit the encoder \(unexpected layer1.2.conv1.weight and 95 more\)"):
        build_model("unet-resnet50", encoder="resnet18", encoder_weights=str(tmp_path / "r34.pth"), **TORCHVISION)
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(WaveUNetError, match="junk.pth: not a PyTorch state dict"):
        build_model("unet-resnet50", encoder="resnet18", encoder_weights=str(tmp_path / "junk.pth"), **TORCHVISION)
    with pytest.raises(WaveUNetError, match="absent.pth: no such encoder weights file"):
        build_model("unet-resnet50", encoder_weights=str(tmp_path / "absent.pth"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint names its encoder weights, but loading it reads no file
        waveunet.save_model(small(encoder_weights=str(tmp_path / "absent.pth")), tmp_path / "m.pt")
        waveunet.load_model(tmp_path / "m.pt")


# ------------------------------------------------------------------ overlap-tile segmentation


def test_tiled_segmentation_equals_a_whole_pass_away_from_the_border():
    """Tiles of 192 output pixels with 64 pixels of context each side, overlapping by 64 and
    cross-faded: 128 or more pixels from the image border, the class scores of a 448x448 slice differ
    from one pass over the whole slice by less than 1% of their spread, and the classes agree on more
    than 99.9% of the pixels (seams included: tiles meet at 128..192 and 256..320). Without the context
    the same tiles differ by up to half the spread."""
    torch.manual_seed(0)
    model = build_model("unet-resnet50", encoder="resnet18", in_channels=1, **TORCHVISION).train()
    image = read_image(ISBI / "04.png")[:, :448, :448]
    for module in model.modules():  # BatchNorm statistics of the real image, so that eval mode is realistic
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model(image[None, :, :256, :256])
    model.eval()
    tiling = image_tiling(model, 192)
    assert (tiling.input, tiling.output, tiling.hop) == ((320, 320), (192, 192), (128, 128))
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = segment(model, image, tile=192)
    inner = (slice(None), slice(128, -128), slice(128, -128))
    assert tiled.shape == whole.shape == (2, 448, 448)
    assert (tiled - whole)[inner].abs().max() < 0.01 * whole.std()
    assert (tiled.argmax(0) == whole.argmax(0))[inner[1:]].float().mean() > 0.999
