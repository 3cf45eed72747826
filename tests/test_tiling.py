"""Tiled inference: windows over time and tiles over height x width from the same routine."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import waveunet
from waveunet.tiling import reflect_pad
from waveunet.tiling import Tiling, exact_tiling, faded_tiling, tiled_forward


class BoxFilter(nn.Module):
    """A valid box filter over ``dims`` axes: context ``c`` on each side, output ``[batch, 1, channels, *size']``."""

    def __init__(self, dims: int, context: int):
        super().__init__()
        self.dims, self.kernel = dims, 2 * context + 1
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        batch, channels = x.shape[:2]
        flat = x.reshape(batch * channels, 1, *x.shape[2:])
        conv = F.conv1d if self.dims == 1 else F.conv2d
        weight = torch.ones(1, 1, *[self.kernel] * self.dims)
        out = conv(flat, weight)
        return self.scale * out.reshape(batch, 1, channels, *out.shape[2:])


def whole_pass(model, x, padding, context):
    """The model over the whole signal, padded by ``context`` on every side."""
    dims = x.dim() - 1
    if padding == "zeros":
        padded = F.pad(x, [context] * (2 * dims))
    else:
        padded = reflect_pad(x, [(context, context)] * dims)
    with torch.inference_mode():
        return model(padded[None])[0]


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("dims,size,hop", [(1, (1001,), (64,)), (1, (50,), (64,)), (2, (37, 29), (8, 16))])
def test_stitched_windows_equal_one_pass_over_the_padded_signal(dims, size, hop, padding):
    context = 6
    model = BoxFilter(dims, context)
    x = torch.randn(2, *size)
    tiling = Tiling(tuple(h + 2 * context for h in hop), hop, hop)
    expected = whole_pass(model, x, padding, context)
    for batch_size in (1, 3):
        got = tiled_forward(model, x, tiling, padding=padding, batch_size=batch_size)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_region_by_region_equals_whole_signal_with_real_context_between_regions():
    model = BoxFilter(1, 5)
    x = torch.randn(1, 500)
    tiling = Tiling((30,), (20,), (20,))
    whole = tiled_forward(model, x, tiling)
    parts = torch.cat([tiled_forward(model, x, tiling, region=[(a, min(500, a + 60))]) for a in range(0, 500, 60)], -1)
    torch.testing.assert_close(parts, whole)
    # the region's neighbours are real context, not padding
    assert not torch.allclose(tiled_forward(model, x[:, 60:120], tiling), whole[..., 60:120])


def test_wave_u_net_tiles_equal_a_whole_song_forward():
    torch.manual_seed(0)
    model = waveunet.build_model("M4", levels=6, features=8).eval()
    song = 0.3 * torch.randn(2, 3 * 22050 + 17)
    sizes = model.sizes(song.shape[-1])
    left = sizes.context
    padded = F.pad(song, (left, sizes.input_length - song.shape[-1] - left))
    with torch.inference_mode():
        expected = model(padded[None])[0][..., : song.shape[-1]]
    for window in (100, 4096, 30000):
        tiling = exact_tiling(model, window)
        assert tiling.hop[0] % model.length_step == 0 and tiling.hop[0] >= window
        got = tiled_forward(model, song, tiling, batch_size=2)
        assert (got - expected).abs().max() <= 1e-5


def test_unet2d_tiles_equal_a_whole_image_pass_on_the_mirror_padded_image():
    torch.manual_seed(0)
    model = waveunet.build_model("unet2d-ronneberger", levels=2, features=4, output_size=20).eval()
    image = torch.rand(1, 45, 38)
    tiling = exact_tiling(model, (16, 24), dims=2)
    context = tiling.context[0]
    height, width = image.shape[1:]
    # the whole image in one valid pass: mirror-pad by the context, and beyond to a valid size
    out = [model.sizes(n) for n in (height, width)]
    padded = reflect_pad(image, [(context, s.input_length - n - context) for s, n in zip(out, (height, width))])
    with torch.inference_mode():
        expected = model(padded[None])[0][:, :height, :width]
    got = tiled_forward(model, image, tiling, padding="reflect", batch_size=4)
    assert got.shape == (2, height, width)
    assert (got - expected).abs().max() <= 1e-5


class Identity(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("size,output,hop", [((100,), (16,), (8,)), ((23, 31), (8, 10), (4, 5)), ((5,), (16,), (8,))])
def test_faded_windows_blend_to_the_signal_itself_for_a_model_that_copies(size, output, hop):
    x = torch.randn(3, *size)
    got = tiled_forward(Identity(), x, Tiling(output, output, hop, fade=True), batch_size=5)
    torch.testing.assert_close(got, x)


def test_faded_tiling_of_a_same_padding_model_blends_to_a_whole_pass_in_the_interior():
    """Each window of a same-padded network sees zeros beyond its borders, so the blend is not one
    pass over the signal; but with half-overlapping windows every interior sample is dominated by a
    window in which it lies far from the borders, so the blend stays close to the whole pass there."""
    torch.manual_seed(0)
    model = waveunet.build_model("M1", levels=3, features=4, output_length=64, output_activation="linear").eval()
    tiling = faded_tiling(model, 64)
    assert tiling.fade and tiling.context == (0,) and tiling.hop == (32,)
    x = torch.randn(1, 512)
    out = tiled_forward(model, x, tiling, batch_size=4)
    with torch.no_grad():
        whole = model(x[None])[0]  # 512 is a valid length of this network: one pass over all of it
    assert out.shape == whole.shape == (2, 1, 512)
    interior = slice(64, -64)
    error = (out - whole)[..., interior].square().mean().sqrt() / whole[..., interior].square().mean().sqrt()
    assert error < 0.05  # measured 0.010 for these weights (0.060 for abutting windows)
    hard = tiled_forward(model, x, Tiling((64,), (64,), (64,)), batch_size=4)  # abutting windows, no blend
    hard_error = (hard - whole)[..., interior].square().mean().sqrt() / whole[..., interior].square().mean().sqrt()
    assert error < hard_error / 2  # the fade is what brings it close


def test_progress_counts_windows():
    calls = []
    tiled_forward(Identity(), torch.randn(1, 100), Tiling((10,), (10,), (10,)), batch_size=4,
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (8, 10), (10, 10)]


@pytest.mark.parametrize("input,output,hop", [((10,), (12,), (12,)), ((11,), (8,), (8,)), ((10,), (8,), (9,)),
                                              ((10, 10), (8,), (8,))])
def test_impossible_tilings_are_refused(input, output, hop):
    with pytest.raises(ValueError):
        Tiling(input, output, hop)


def test_unknown_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        tiled_forward(BoxFilter(1, 2), torch.randn(1, 30), Tiling((9,), (5,), (5,)), padding="wrap")
