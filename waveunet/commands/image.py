"""``waveunet image train`` and ``waveunet image segment``: the 2D U-Net from the command line."""

from __future__ import annotations

import click

from ..errors import WaveUNetError
from .train import finish, run_options


@click.group()
def image():
    """Image segmentation with the 2D U-Net (Ronneberger et al., 2015)."""


@image.command()
@run_options
def train(recipe, out, overrides, resume, force, no_progress):
    """Train a 2D U-Net as RECIPE says (see recipes/unet2d-*.toml)."""
    from ..train.launch import train_from_recipe

    finish(train_from_recipe(recipe, out, overrides, resume=resume, force=force, task="image", progress=not no_progress))


@image.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", required=True, help="Checkpoint file (e.g. RUN_DIR/checkpoints/best.pt).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: <image name>.png (class indices) per image.")
@click.option("--overlay", is_flag=True, help="Also write <image name>.overlay.png, the image tinted by class.")
@click.option("--tile", type=click.IntRange(min=1), default=None,
              help="Output pixels per tile side (default: the model's training tile); memory grows with its square.")
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
