"""Size arithmetic: pure functions, checked against the numbers of the paper and the reference code."""

import pytest

from waveunet import sizes
from waveunet.sizes import Conv, Decimate, Pool, Resample, SizeError, TransposedConv, Upsample


def paper_ops(levels=12, padding="valid", down_kernel=15, up_kernel=5):
    down = [op for _ in range(levels) for op in (Conv(down_kernel, 1, padding), Decimate(2, padding))]
    bottleneck = [Conv(down_kernel, 1, padding)]
    up = [op for _ in range(levels) for op in (Upsample(2, padding), Conv(up_kernel, 1, padding))] + [Conv(1)]
    return down, bottleneck, up


@pytest.mark.parametrize("desired, output, input_", [(16384, 16389, 147443), (98560, 102405, 233459)])
def test_paper_table(desired, output, input_):
    s = sizes.unet_sizes(*paper_ops(), desired)
    assert (s.output_length, s.input_length, s.context) == (output, input_, 65527)


def test_valid_lengths_step_by_two_to_the_levels():
    ops = paper_ops()
    assert sizes.valid_length_step(ops[0]) == 4096
    for m in range(4):
        assert sizes.output_length_for(*ops, 147443 + m * 4096) == 16389 + m * 4096
    for bad in (147444, 147443 + 2048, 147443 - 4096 * 40):
        with pytest.raises(SizeError):
            sizes.output_length_for(*ops, bad)


def test_sizes_are_the_smallest_at_least_desired():
    ops = paper_ops()
    for desired in (1, 16389, 16390, 20485, 20486):
        s = sizes.unet_sizes(*ops, desired)
        assert s.output_length >= desired
        assert sizes.output_length_for(*ops, s.input_length) == s.output_length
        for smaller in range(max(1, s.bottleneck_length - 3000), s.bottleneck_length):  # every shorter bottleneck
            try:
                assert sizes.forward_length(ops[2], smaller) < desired
            except SizeError:
                pass


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_sizes_match_a_search_over_every_input_length(padding):
    """The smallest input length that a small U-Net takes and that gives at least the desired output,
    found by trying every input length, is the one :func:`unet_sizes` computes."""
    ops = paper_ops(levels=3, padding=padding, down_kernel=5, up_kernel=3)
    outputs = {}
    for n in range(1, 400):
        try:
            outputs[n] = sizes.output_length_for(*ops, n)
        except SizeError:
            pass
    assert len(outputs) > 10
    for desired in range(1, 200):
        smallest = min(n for n, m in outputs.items() if m >= desired)
        s = sizes.unet_sizes(*ops, desired)
        assert (s.input_length, s.output_length) == (smallest, outputs[smallest])


def test_same_mode_input_equals_output_multiple_of_two_to_the_levels():
    ops = paper_ops(padding="same")
    s = sizes.unet_sizes(*ops, 16384)
    assert s.input_length == s.output_length == 16384 and s.context == 0
    assert sizes.unet_sizes(*ops, 16385).output_length == 16384 + 4096
    with pytest.raises(SizeError):
        sizes.output_length_for(*ops, 16384 + 2048)


def test_receptive_field_is_context_on_both_sides_plus_one():
    s = sizes.unet_sizes(*paper_ops(), 16384)
    assert s.receptive_field == 2 * 65527 + 1


def test_pytorch_reimplementation_sizes():
    # levels=6 in the reference = 5 resampling steps by 4, kernel 5, depth 1
    down = [op for _ in range(5) for op in (Conv(5), Conv(5), Resample(4))]
    up = [op for _ in range(5) for op in (Resample(4, up=True), Conv(5), Conv(5))] + [Conv(1)]
    s = sizes.unet_sizes(down, [Conv(5)], up, 88200)
    assert (s.input_length, s.output_length, s.context) == (97961, 88409, 4776)


def test_ronneberger_572_to_388():
    down = [op for _ in range(4) for op in (Conv(3), Conv(3), Pool(2))]
    up = [op for _ in range(4) for op in (TransposedConv(2, 2), Conv(3), Conv(3))] + [Conv(1)]
    s = sizes.unet_sizes(down, [Conv(3), Conv(3)], up, 388)
    assert (s.input_length, s.output_length) == (572, 388)
    assert sizes.output_length_for(down, [Conv(3), Conv(3)], up, 572 + 16) == 388 + 16
    with pytest.raises(SizeError):  # 574 gives an odd length at some pooling
        sizes.output_length_for(down, [Conv(3), Conv(3)], up, 574)


@pytest.mark.parametrize("op", [Conv(15), Conv(5, 4), Conv(3, 2, "same"), Decimate(2), Decimate(2, "same"),
                                Pool(2), Pool(2, True), Resample(4), Resample(4, up=True), Upsample(2),
                                Upsample(2, "same"), TransposedConv(2, 2), TransposedConv(5, 4, 4)])
def test_inverse_is_the_smallest_preimage(op):
    def forward_or_none(n):
        try:
            return op.forward(n)
        except SizeError:
            return None

    outputs = {forward_or_none(n) for n in range(1, 200)} - {None}
    for m in sorted(outputs)[:30]:
        n = op.inverse(m)
        assert forward_or_none(n) == m
        assert all(forward_or_none(smaller) != m for smaller in range(1, n))


def test_upsampling_formulas():
    assert Upsample(2).forward(5) == 9           # linear/learned, corners aligned: 2n-1
    assert Upsample(2, "same").forward(5) == 10  # TF1 resize_bilinear: 2n
    assert TransposedConv(5, 4, 4).forward(10) == (10 - 1) * 4 + 1 - 5 + 1  # the reference's formula
    assert Resample(4, up=True).forward(10) == 37
    assert Resample(4).forward(37) == 10
    with pytest.raises(SizeError):
        Resample(4).forward(36)
