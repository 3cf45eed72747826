"""``waveunet image train``, ``waveunet image segment`` and ``waveunet image import-checkpoint``: the image U-Nets from the command line."""

from __future__ import annotations

import click

from ..errors import WaveUNetError
from .train import finish, run_options


@click.group()
def image():
    """Image segmentation with the 2D U-Net (Ronneberger et al., 2015) and the U-Net with a ResNet encoder."""


@image.command()
@run_options
def train(recipe, out, overrides, resume, force, no_progress):
    """Train an image U-Net as RECIPE says (see recipes/unet2d-*.toml, recipes/unet-resnet*.toml)."""
    from ..train.launch import train_from_recipe

    finish(train_from_recipe(recipe, out, overrides, resume=resume, force=force, task="image", progress=not no_progress))


@image.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", required=True, help="Checkpoint file (e.g. RUN_DIR/checkpoints/best.pt).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: <image name>.png per image (a palette PNG of class indices in the class colours).")
@click.option("--overlay", is_flag=True, help="Also write <image name>.overlay.png, the image tinted by class.")
@click.option("--tile", type=click.IntRange(min=1), default=None,
              help="Output pixels per tile side (default: the model's training tile; at least 512 for the "
                   "ResNet U-Nets); memory grows with its square.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def segment(images, model, out, overlay, tile, force, device, no_progress):
    """Segment each IMAGE (PNG, TIFF, JPEG) into --out, any size, by overlap-tile.

    A bad image is reported and skipped; the others are still segmented, and the exit code is 1.
    """
    from ..device import resolve_device
    from ..image.segment import segment_files
    from ..resolve import load_model

    network = load_model(model, device=resolve_device(device), kind="image")
    errors = segment_files(network, images, out, with_overlay=overlay, tile=tile, force=force,
                           progress=not no_progress)
    if errors:
        raise WaveUNetError(f"{len(errors)} of {len(images)} image(s) failed (see the errors above)")


def _numbers(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated numbers", param_hint=option) from None


@image.command("import-checkpoint")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--out", "-o", "dst", required=True, type=click.Path(dir_okay=False), help="Our checkpoint to write.")
@click.option("--mean", metavar="R,G,B", help="Input standardisation the model was trained with "
                                              "(default: its dataset's, read from the checkpoint's config).")
@click.option("--std", metavar="R,G,B", help="Input standardisation the model was trained with (with --mean).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
def import_checkpoint(src, dst, mean, std, force):
    """Convert a checkpoint of yassouali/pytorch-segmentation's UNet or UNetResnet (its trainer's
    checkpoint-epoch<N>.pth or best_model.pth, DataParallel or not) into ours."""
    from ..image.importer import import_segmentation_checkpoint

    means, stds = _numbers(mean, "--mean"), _numbers(std, "--std")
    if (means is None) != (stds is None):
        raise click.UsageError("give --mean and --std together")
    model = import_segmentation_checkpoint(src, dst, mean=means, std=stds, force=force)
    c = model.config
    network = (f"UNetResnet -> {c.encoder} encoder (deep stem, dilated)" if model.metadata["architecture"] == "UNetResnet"
               else "UNet -> unet2d (yassouali's arrangement)")
    scaling = (f"inputs standardised with mean {list(c.input_mean)}, std {list(c.input_std)}" if c.input_mean
               else "inputs taken as [0, 1] pixel values (pass --mean and --std if it was trained on standardised ones)")
    click.echo(f"{dst}: {network}, {c.in_channels} channels -> {c.classes} classes, "
               f"{sum(p.numel() for p in model.parameters()):,} parameters; {scaling}")
