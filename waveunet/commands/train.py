"""``waveunet train RECIPE.toml --out RUN_DIR [--set key=value ...] [--resume | --force]``.

Exit codes: 0 when the run finished (early stopping) or used up the recipe's budget
(``train.max_steps``, ``train.max_time``); 130 (SIGINT, Ctrl-C) or 143 (SIGTERM) when a signal
stopped it, after saving ``checkpoints/last.pt`` (``--resume`` continues it); 1 for an error.
"""

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


def finish(result) -> None:
    """Exit as the run ended: 130/143 if a signal stopped it (it did not complete), else normally."""
    if result.signal:
        from ..cli import exit_code

        raise click.exceptions.Exit(exit_code(result.signal))


@click.command()
@run_options
def train(recipe, out, overrides, resume, force, no_progress):
    """Train a Wave-U-Net as RECIPE says (see recipes/). Under torchrun, one process per GPU.

    Ctrl-C or SIGTERM stops after the current step and saves checkpoints/last.pt (exit code 130 or
    143); --resume continues from there.
    """
    from ..train.launch import train_from_recipe

    finish(train_from_recipe(recipe, out, overrides, resume=resume, force=force, progress=not no_progress))
