"""The dimension-generic blocks: resampling formulas, crops, merges, stages."""

import math

import pytest
import torch
import torch.nn.functional as F

from waveunet import blocks


def test_linear_upsample_valid_is_interpolate_with_aligned_corners():
    h = torch.randn(2, 3, 9)
    out = blocks.LinearUpsample("valid")(h)
    expected = F.interpolate(h, size=2 * 9 - 1, mode="linear", align_corners=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[..., ::2], h)


def test_linear_upsample_same_is_tf1_resize_bilinear():
    h = torch.tensor([[[1.0, 3.0, 7.0]]])
    out = blocks.LinearUpsample("same")(h)
    # TF1 resize_bilinear(align_corners=False, half_pixel_centers=False): src = dst * n / 2n = dst / 2
    assert out.tolist() == [[[1.0, 2.0, 3.0, 5.0, 7.0, 7.0]]]
    # ... which is NOT PyTorch's half-pixel align_corners=False
    assert not torch.allclose(out, F.interpolate(h, scale_factor=2, mode="linear", align_corners=False))


def test_learned_upsample_formula_and_linear_start():
    h = torch.randn(1, 4, 6)
    layer = blocks.LearnedUpsample(4, "valid")
    torch.testing.assert_close(layer(h), blocks.LinearUpsample("valid")(h))  # w = 0: plain interpolation
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([-2.0, -0.5, 0.5, 3.0]))
    out = layer(h)
    a = torch.sigmoid(layer.weight)[:, None]
    assert out.shape[-1] == 11
    torch.testing.assert_close(out[..., 0::2], h)
    torch.testing.assert_close(out[..., 1::2], a * h[..., :-1] + (1 - a) * h[..., 1:])
    same = blocks.LearnedUpsample(4, "same")
    with torch.no_grad():
        same.weight.copy_(layer.weight)
    out_same = same(h)
    assert out_same.shape[-1] == 12
    torch.testing.assert_close(out_same[..., -1], a[:, 0] * h[..., -1])  # zero right neighbour


def test_learned_upsample_weights_get_gradients():
    layer = blocks.LearnedUpsample(3)
    layer(torch.randn(1, 3, 5)).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_transposed_upsample_sizes():
    up = blocks.TransposedUpsample(1, 4, 4, kernel=5, stride=4, padding=4)
    assert up(torch.randn(1, 4, 10)).shape[-1] == up.size_ops[0].forward(10) == (10 - 1) * 4 + 1 - 5 + 1
    up2d = blocks.TransposedUpsample(2, 8, 4, kernel=2, stride=2)
    assert up2d(torch.randn(1, 8, 5, 7)).shape == (1, 4, 10, 14)


def test_sinc_resample_lengths_and_lowpass():
    h = blocks.sinc_lowpass(4)
    assert h.shape == (15,) and math.isclose(float(h.sum()), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(h, h.flip(0))  # linear phase
    down, up = blocks.SincResample(2, 4), blocks.SincResample(2, 4, up=True)
    x = torch.randn(1, 2, 37)
    assert down(x).shape[-1] == 10 and up(down(x)).shape[-1] == 37
    constant = torch.ones(1, 2, 41)
    torch.testing.assert_close(down(constant), torch.ones(1, 2, 11))  # DC passes with unit gain
    assert "filter" in dict(down.named_buffers()) and not list(down.parameters())


def test_decimate_keeps_every_other_sample_in_every_dim():
    x = torch.arange(2 * 9 * 7.0).view(1, 2, 9, 7)
    torch.testing.assert_close(blocks.Decimate(2)(x), x[..., ::2, ::2])
    assert blocks.Decimate(1)(torch.randn(1, 1, 9)).shape[-1] == 5


def test_center_crop_and_pad():
    x = torch.arange(10.0).view(1, 1, 10)
    assert blocks.center_crop(x, [6]).flatten().tolist() == [2, 3, 4, 5, 6, 7]
    assert blocks.center_crop(x, [5]).flatten().tolist() == [2, 3, 4, 5, 6]  # extra sample on the right
    with pytest.raises(ValueError):
        blocks.center_crop(x, [11])
    img = torch.ones(1, 1, 3, 4)
    padded = blocks.center_pad(img, [5, 6])
    assert padded.shape[-2:] == (5, 6) and padded.sum() == 12 and padded[0, 0, 0].sum() == 0
    assert blocks.center_pad(torch.ones(1, 1, 6, 6), [4, 5]).shape[-2:] == (4, 5)


def test_crop_and_concat_puts_the_cropped_skip_first():
    skip = torch.arange(9.0).view(1, 1, 9)
    h = torch.full((1, 2, 5), -1.0)
    out = blocks.crop_and_concat(skip, h)
    assert out.shape == (1, 3, 5)
    assert out[0, 0].tolist() == [2, 3, 4, 5, 6] and (out[0, 1:] == -1).all()
    out2d = blocks.crop_and_concat(torch.randn(1, 4, 64, 64), torch.randn(1, 4, 56, 56))
    assert out2d.shape == (1, 8, 56, 56)
    assert blocks.resize_and_concat(torch.randn(1, 2, 7, 7), torch.randn(1, 3, 8, 8)).shape == (1, 5, 7, 7)


@pytest.mark.parametrize("dim", [1, 2])
def test_conv_stage_valid_and_same(dim):
    size = (20,) * dim
    valid = blocks.ConvStage(dim, [3, 4, 8], 3)
    out = valid(torch.randn(1, 3, *size))
    assert out.shape == (1, 8, *(16,) * dim)
    assert valid[0].conv.out_channels == 4 and valid[1].conv.in_channels == 4
    same = blocks.ConvStage(dim, [3, 8, 8], 3, padding="same", norm="batch", activation="relu", bias=False)
    assert same(torch.randn(2, 3, *size)).shape == (2, 8, *size)
    assert same[0].conv.bias is None
    assert [op.kernel for op in blocks.collect_size_ops(same)] == [3, 3]
    assert list(same.state_dict())[:3] == ["0.conv.weight", "0.norm.weight", "0.norm.bias"]


def test_group_norm_uses_one_group_per_eight_channels():
    assert blocks.make_norm("group", 1, 32).num_groups == 4
    assert blocks.make_norm("group", 1, 4).num_groups == 1
    with pytest.raises(ValueError):
        blocks.make_norm("layer", 1, 4)


def test_down_and_up_blocks_round_trip_shapes_in_2d():
    down = blocks.DownBlock(blocks.ConvStage(2, [1, 4, 4], 3), blocks.MaxPool(2))
    up = blocks.UpBlock(blocks.TransposedUpsample(2, 8, 4, 2, 2), blocks.ConvStage(2, [8, 4, 4], 3))
    x, skip = down(torch.randn(1, 1, 36, 36))
    assert skip.shape == (1, 4, 32, 32) and x.shape == (1, 4, 16, 16)
    h = torch.randn(1, 8, 12, 12)
    assert up(h, skip).shape == (1, 4, 20, 20)
