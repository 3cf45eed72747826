"""The Wave-U-Net variants and the 2D U-Nets: sizes, parameter counts, outputs, gradients."""

import pytest
import torch

import waveunet
from waveunet import WaveUNetError
from waveunet.blocks import center_crop
from waveunet.models import PRESETS, UNet2d, WaveUNet, WaveUNetConfig, build_model

from helpers import SPEC_NUMBERS

EXPECTED = SPEC_NUMBERS


def meta_model(name, **overrides):
    with torch.device("meta"):  # sizes and counts without allocating 70 M parameters
        return build_model(name, **overrides)


def test_every_preset_is_checked():
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_preset_parameters_and_sizes(name):
    parameters, input_, output = EXPECTED[name]
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == parameters
    if input_ is None:  # the padded U-Net: any size in, the same size out
        assert model.keeps_size and model.output_length_for(333) == 333
    else:
        assert (model.training_sizes.input_length, model.training_sizes.output_length) == (input_, output)


def test_pytorch_default_with_its_fixed_filters_counts_as_the_reference_state_dict():
    model = meta_model("pytorch-default")
    assert sum(t.numel() for t in model.state_dict().values()) == 70_148_232


def test_paper_variant_table():
    assert PRESETS["M6"].sources == ("bass", "drums", "other", "vocals")
    assert PRESETS["M1"].output == "direct" and PRESETS["M1"].output_activation == "tanh"
    assert PRESETS["M7"].sample_rate == 8192 and PRESETS["M5-HighSR"].sample_rate == 44100
    assert all(PRESETS[m].levels == 12 for m in ("M1", "M4", "M7"))


def small(name="M4", **overrides):
    return build_model(name, levels=4, features=6, **overrides)


@pytest.mark.parametrize("name", [n for n in EXPECTED if isinstance(PRESETS[n], WaveUNetConfig)])
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    s = model.sizes(1)
    mix = torch.rand(1, model.config.channels, s.input_length) - 0.5
    out = model(mix)
    assert out.shape == (1, len(model.config.sources), model.config.channels, s.output_length)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", ["unet2d-ronneberger", "unet2d-padded"])
def test_unet2d_gradient_and_shapes(name):
    model = build_model(name, features=8)
    s = model.sizes(20)
    x = torch.randn(2, model.config.in_channels, s.input_length, s.input_length + model.length_step)
    out = model(x)
    assert out.shape == (2, 2, s.output_length, model.output_length_for(s.input_length + model.length_step))
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_padded_unet_keeps_any_size():
    model = build_model("unet2d-padded", features=4).eval()
    assert model(torch.randn(1, 3, 37, 50)).shape == (1, 2, 37, 50)


def test_difference_output_sums_to_the_cropped_mixture_in_training():
    model = small("M6").train()
    mix = torch.rand(2, 2, model.input_length) * 4 - 2  # loud: clipping would break the identity
    out = model(mix)
    torch.testing.assert_close(out.sum(dim=1), center_crop(mix, [model.output_length]), atol=1e-5, rtol=0)
    assert out.abs().max() > 1  # no clipping while training


def test_linear_output_is_clipped_at_inference_only():
    model = small().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, model.input_length) * 6 - 3)
    assert out.abs().max() <= 1


def test_tanh_output_and_same_padding():
    model = small("M1").train()
    with torch.no_grad():
        model.nets["all"].output.conv.bias.fill_(3.0)  # pre-activations far outside [-1, 1]
    mix = torch.rand(1, 1, model.input_length)
    out = model(mix)
    pre = model.nets["all"](mix).view(out.shape)  # the output conv, before the activation
    assert model.input_length == model.output_length == 16384
    assert pre.abs().max() > 2 and out.abs().max() < 1
    torch.testing.assert_close(out, torch.tanh(pre))


def test_one_network_per_source():
    model = small(separate=True, sources=("bass", "drums", "vocals"))
    assert list(model.nets) == ["bass", "drums"]
    shared = small(sources=("bass", "drums", "vocals"))
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in shared.parameters())
    assert model(torch.zeros(1, 2, model.input_length)).shape == (1, 3, 2, model.output_length)


@pytest.mark.parametrize("down, up", [("conv", "transposed"), ("decimate", "learned"), ("sinc", "sinc")])
@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_resampling_and_norm_options_run_at_their_valid_sizes(down, up, norm):
    factor = 4 if down == "sinc" else 2
    model = small(downsample=down, upsample=up, norm=norm, resample_factor=factor, output_length=300).train()
    out = model(torch.randn(2, 2, model.input_length))
    assert out.shape[-1] == model.output_length >= 300


def test_inference_window_can_be_longer_than_training():
    model = small().eval()
    long = model.sizes(model.output_length + 3 * model.length_step)
    assert long.input_length - model.input_length == long.output_length - model.output_length == 3 * model.length_step
    with torch.no_grad():
        assert model(torch.zeros(1, 2, long.input_length)).shape[-1] == long.output_length


def test_invalid_input_length_is_refused_with_the_fix():
    model = small()
    with pytest.raises(ValueError, match="model.sizes"):
        model(torch.zeros(1, 2, model.input_length + 1))


def test_bad_configs_and_overrides():
    with pytest.raises(ValueError):
        WaveUNetConfig(padding="reflect")
    with pytest.raises(ValueError):
        WaveUNetConfig(output="difference", sources=("vocals",))
    with pytest.raises(WaveUNetError, match="unknown preset"):
        build_model("M9")
    with pytest.raises(WaveUNetError, match="levelz"):
        build_model("M4", levelz=3)
    assert isinstance(build_model("M4", levels=2), WaveUNet)
    assert isinstance(waveunet.build_model("unet2d-ronneberger", features=4), UNet2d)


def test_unet2d_with_bilinear_upsampling():
    model = build_model("unet2d-padded", in_channels=1, levels=2, features=4, upsample="bilinear").eval()
    assert isinstance(model.unet.up[0].resample, waveunet.blocks.InterpolateUpsample)
    assert model.unet.up[0].resample.conv.kernel_size == (1, 1)
    image = torch.rand(1, 1, 37, 50)
    assert model(image).shape == (1, 2, 37, 50)  # padded: any size in, the same size out
    # the up-sampling is bilinear interpolation with aligned corners, then the 1x1 conv
    up, h = model.unet.up[0].resample, torch.randn(1, 16, 5, 7)
    expected = up.conv(torch.nn.functional.interpolate(h, size=(10, 14), mode="bilinear", align_corners=True))
    torch.testing.assert_close(up(h), expected)
    with pytest.raises(WaveUNetError, match="upsample must be one of transposed, bilinear"):
        build_model("unet2d-padded", upsample="linear")
    with pytest.raises(WaveUNetError, match="upsample must be one of linear, learned, transposed, sinc"):
        build_model("M4", upsample="bilinear")
