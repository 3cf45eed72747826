"""``waveunet info NAME_OR_CHECKPOINT [--json] [--output-length N]``."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("name_or_checkpoint", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--output-length", type=int, default=None,
              help="Desired output length in samples (audio) or tile side in pixels (images); "
                   "default: the model's training size.")
def info(name_or_checkpoint, as_json, output_length):
    """Parameters, sizes, context, receptive field and compute of a preset or checkpoint.

    Without NAME_OR_CHECKPOINT: the presets, each with a line on what it is, and the bundled models.
    """
    from ..info import describe, format_info, list_models

    if name_or_checkpoint is None:
        click.echo(list_models())
        return
    facts = describe(name_or_checkpoint, output_length)
    click.echo(json.dumps(facts) if as_json else format_info(facts))
