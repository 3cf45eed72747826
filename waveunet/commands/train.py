"""``waveunet train RECIPE.toml --out RUN_DIR [--set key=value ...] [--resume | --force]``."""

from __future__ import annotations

import click


def run_options(command):
    """The options every training command shares (audio ``train`` and ``image train``)."""
    options = [
        click.argument("recipe", type=click.Path(dir_okay=False)),
        click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
                     help="Run folder (checkpoints, metrics, logs)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe key, e.g. --set train.optimizer.lr=1e-5 (value in TOML syntax; repeatable)."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt."),
        click.option("--force", is_flag=True, help="Replace the run in --out."),
        click.option("--no-progress", is_flag=True, help="No progress bars (log lines only)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@run_options
def train(recipe, out, overrides, resume, force, no_progress):
    """Train a Wave-U-Net as RECIPE says (see recipes/). Under torchrun, one process per GPU."""
    from ..train.launch import train_from_recipe

    train_from_recipe(recipe, out, overrides, resume=resume, force=force, progress=not no_progress)
