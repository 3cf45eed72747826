"""``waveunet import-checkpoint SRC -o DST [--sample-rate ...] [--instruments ...] [--strides ...] [--output-size ...]``."""

from __future__ import annotations

import click


@click.command("import-checkpoint")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--out", "-o", "dst", required=True, type=click.Path(dir_okay=False), help="Our checkpoint to write.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=44100, show_default=True,
              help="Sample rate the model was trained at (the file does not say).")
@click.option("--instruments", metavar="A,B,...",
              help="Comma-separated instruments; needed for a shared (ALL) network not trained on "
                   "bass,drums,other,vocals.")
@click.option("--strides", type=click.IntRange(min=2),
              help="Resampling factor per level; read from fixed sinc filters, default 4 for learned ones.")
@click.option("--output-size", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Training output length in seconds.")
def import_checkpoint(src, dst, sample_rate, instruments, strides, output_size):
    """Convert a checkpoint of the PyTorch Wave-U-Net (f90/Wave-U-Net-Pytorch) into ours."""
    from ..importer import import_pytorch_checkpoint

    names = [name.strip() for name in instruments.split(",") if name.strip()] if instruments else None
    model = import_pytorch_checkpoint(src, dst, sample_rate=sample_rate, instruments=names, strides=strides,
                                      output_size=output_size)
    c = model.config
    click.echo(f"{dst}: {len(c.sources)} sources ({', '.join(c.sources)}), {c.channels} channels, "
               f"{c.sample_rate} Hz, levels {c.levels}, features {c.features} ({c.growth}), norm {c.norm}, "
               f"resampling {c.downsample}/{c.upsample} x{c.resample_factor}, "
               f"{'one net per source' if c.separate else 'one shared net'}; "
               f"input {model.input_length}, output {model.output_length} samples")
