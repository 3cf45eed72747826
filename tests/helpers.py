"""Numbers and snippets several test files share."""

# preset: (parameters, input length/side, output length/side), from docs/specs/wave-u-net.md,
# docs/specs/wave-u-net-pytorch.md (69,910,152 trainable: the fixed sinc filters are buffers here)
# and the foundation issue, docs/specs/unet-resnet.md for the U-Nets with a ResNet encoder; None: the
# padded networks keep any size.
SPEC_NUMBERS = {
    "M1": (10_263_028, 16384, 16384),
    "M2": (10_263_002, 16384, 16384),
    "M3": (10_263_002, 147443, 16389),
    "M4": (10_263_390, 147443, 16389),
    "M5": (10_265_550, 147443, 16389),
    "M6": (10_263_498, 147443, 16389),
    "M7": (20_594_652, 233459, 102405),
    "M5-HighSR": (10_265_550, 147443, 16389),
    "pytorch-default": (69_910_152, 97961, 88409),
    "unet2d-ronneberger": (31_030_658, 572, 388),
    "unet2d-padded": (26_355_234, None, None),
    "unet-resnet50": (29_999_920, None, None),
    "unet-resnet101": (48_992_048, None, None),
    "unet-resnet152": (64_635_696, None, None),
}

#: a tiny M4 (3 levels, 4 extra filters per level, 8 kHz): 1267 input / 1029 output samples
TINY_MODEL = """
[model]
preset = "M4"
levels = 3
features = 4
sample_rate = 8000
output_length = 1024
name = "tiny"
"""
