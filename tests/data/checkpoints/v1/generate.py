"""Make the format-1 checkpoint fixtures: run against waveunet 0.1.0 as of commit 7868923.

    git worktree add /tmp/v1 7868923 && cd /tmp/v1 && python /path/to/this/generate.py OUT_DIR

Each fixture is a small model of one structural variant (layout, resampling, norm, 2D options),
saved by that version's ``waveunet.save_model`` (checkpoint format 1, positional state-dict keys),
with every parameter and buffer drawn at random (BatchNorm statistics included; fixed sinc filters
kept) so that a key mapped to the wrong place changes the output. ``outputs.pt`` holds, per
fixture, an input and that version's output for it in eval mode, so that later versions can check
that they load the file and compute the same function. ``demo.pt`` is the bundled demo model of
that version, and ``demo-excerpt`` its separation of the first half second of the bundled example.
"""

import shutil
import sys
from pathlib import Path

import torch

import waveunet
from waveunet.models import UNet2dConfig, WaveUNetConfig

VARIANTS = {
    # the paper's layout: decimation and linear interpolation (M4, small)
    "paper-linear": WaveUNetConfig(name="paper-linear", levels=3, features=4, sample_rate=8000, output_length=256),
    # learned interpolation (M5), strided-conv down-sampling, BatchNorm, two convs per stage, 4 sources, mono
    "paper-learned-conv-batch": WaveUNetConfig(name="paper-learned-conv-batch", sources=("bass", "drums", "other", "vocals"),
                                               channels=1, levels=3, features=4, sample_rate=8000, upsample="learned",
                                               downsample="conv", norm="batch", depth=2, output_length=256),
    # same padding, transposed up-sampling, GroupNorm, direct tanh output, one net per source
    "paper-same-transposed-group": WaveUNetConfig(name="paper-same-transposed-group", levels=3, features=8,
                                                  sample_rate=8000, padding="same", upsample="transposed",
                                                  norm="group", output="direct", output_activation="tanh",
                                                  separate=True, output_length=256),
    # the PyTorch re-implementation: fixed sinc resampling by 4, GroupNorm, one net per source
    "pytorch-sinc-group": WaveUNetConfig(name="pytorch-sinc-group", layout="pytorch", sources=("bass", "drums", "other", "vocals"),
                                         levels=2, features=8, growth="double", down_kernel=5, up_kernel=5,
                                         downsample="sinc", upsample="sinc", resample_factor=4, norm="group",
                                         activation="relu", output="direct", separate=True, sample_rate=8000,
                                         output_length=512),
    # ... with learned resampling, BatchNorm, one shared net, a two-layer bottleneck
    "pytorch-learned-batch": WaveUNetConfig(name="pytorch-learned-batch", layout="pytorch", levels=2, features=8,
                                            growth="double", down_kernel=5, up_kernel=5, downsample="conv",
                                            upsample="transposed", resample_factor=4, norm="batch", activation="relu",
                                            output="direct", depth=2, sample_rate=8000, output_length=512),
    # the 2D U-Nets: Ronneberger's valid one, the padded one (BatchNorm, two bottleneck stages), bilinear
    "unet2d-valid": UNet2dConfig(name="unet2d-valid", levels=2, features=4, output_size=20),
    "unet2d-padded": UNet2dConfig(name="unet2d-padded", in_channels=3, levels=2, features=4, padding="same", norm="batch",
                                  bias=False, half_first=True, bottleneck_stages=2, pool_ceil=True, merge="pad",
                                  output_size=24),
    "unet2d-bilinear": UNet2dConfig(name="unet2d-bilinear", levels=2, features=4, padding="same", upsample="bilinear",
                                    merge="pad", output_size=24),
}


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(".filter") or tensor.dtype == torch.int64:  # sinc filters, BN batch counters
                continue
            values = torch.randn(tensor.shape, generator=generator) * 0.3
            tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    outputs = {}
    for name, config in VARIANTS.items():
        model = waveunet.build_model(config)
        randomise(model, generator)
        model.eval()
        if isinstance(config, WaveUNetConfig):
            x = torch.randn(2, config.channels, model.input_length, generator=generator) * 0.5
        else:
            side = model.input_size
            x = torch.rand(2, config.in_channels, side, side + 8 * (config.padding == "same"), generator=generator)
        with torch.no_grad():
            outputs[name] = {"input": x, "output": model(x)}
        waveunet.save_model(model, out / f"{name}.pt", step=7, metadata={"fixture": name})
    demo = waveunet.load_model("demo")
    shutil.copyfile(Path(waveunet.__file__).parent / "pretrained" / "demo.pt", out / "demo.pt")
    from waveunet.audio import read_audio

    audio, rate = read_audio(Path(waveunet.__file__).parent / "examples" / "80s-rock.flac", 0, 22050)
    stems = waveunet.separate(demo, audio, rate, device="cpu")
    outputs["demo-excerpt"] = {"input": audio, "sample_rate": rate, "output": torch.stack([stems[s] for s in demo.config.sources])}
    torch.save(outputs, out / "outputs.pt")
    print(f"wrote {len(VARIANTS) + 1} checkpoints and outputs.pt to {out} (waveunet {waveunet.__version__})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
