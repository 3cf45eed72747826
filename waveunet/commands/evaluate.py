"""``waveunet evaluate``: BSSEval v4 (museval) scores of a model or of estimate files."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import WaveUNetError


@click.command()
@click.option("--model", "-m", default=None, help="Bundled model name or checkpoint file to separate each track with.")
@click.option("--estimates", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of estimates to score instead: EST_DIR/<track>/<target>.wav.")
@click.option("--musdb", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="MUSDB18 root (holding train/ and test/).")
@click.option("--is-wav", is_flag=True, help="The MUSDB18 root is MUSDB18-HQ (WAV folders).")
@click.option("--references", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Track folders instead of MUSDB18: DIR/<track>/<source>.<ext>, mixture optional.")
@click.option("--subset", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--split", type=click.Choice(["train", "valid"]), default=None,
              help="musdb's split of the train subset.")
@click.option("--tracks", multiple=True, metavar="NAME", help="Only these tracks (repeat the option).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the per-track museval JSON files, summary.json and summary.csv.")
@click.option("--backend", type=click.Choice(["fast", "museval"]), default="fast", show_default=True,
              help="fast: this package's BSSEval v4 in torch; museval: museval itself (same numbers, slower).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tracks scored at once (worker threads).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="Where the model and the fast backend run.")
@click.option("--force", is_flag=True, help="Score tracks again even if their JSON exists.")
def evaluate(model, estimates, musdb, is_wav, references, subset, split, tracks, out, backend, jobs, device, force):
    """Score separations with BSSEval v4 as SiSEC 2018 / museval do.

    Either separate each track with --model, or score --estimates made by anything. Writes one
    museval JSON per track (OUT/<subset>/<track>.json for MUSDB18, OUT/<track>.json for track
    folders), skips tracks already scored unless --force, and prints and saves the summary: per
    target, the median over frames, then the median (and the mean) over tracks.
    """
    from ..evaluate.run import EvaluationConfig, evaluate_estimates, evaluate_model
    from ..evaluate.summary import format_table
    from ..evaluate.tracks import open_references
    from ..device import resolve_device

    if (model is None) == (estimates is None):
        raise WaveUNetError("give either --model M (separate and score) or --estimates EST_DIR (score files)")
    if is_wav and musdb is None:
        raise WaveUNetError("--is-wav applies to --musdb ROOT only")
    collection = open_references(musdb=musdb, is_wav=is_wav, subset=subset, split=split, references=references)
    device = resolve_device(device)
    config = EvaluationConfig(out=out, backend=backend, jobs=jobs, force=force, device=device)
    echo = lambda line: click.echo(line, err=True)  # noqa: E731 - progress on stderr, the table on stdout
    if model is not None:
        from ..resolve import load_model

        network = load_model(model, device=device, kind="audio")
        result = evaluate_model(network, collection, config, tracks=tracks, device=device, echo=echo)
    else:
        result = evaluate_estimates(estimates, collection, config, tracks=tracks, echo=echo)
    click.echo(format_table(result.summary))
    click.echo(f"{len(result.scores)} track(s), {result.scored} scored now; "
               f"summary in {result.files[0]} and {result.files[1]}", err=True)
