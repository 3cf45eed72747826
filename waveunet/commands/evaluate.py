"""``waveunet evaluate``: BSSEval v4 (museval) scores of a model or of estimate files, and
``waveunet evaluate compare``: several such runs side by side, with paired tests and box plots."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import click

from ..errors import WaveUNetError


@contextmanager
def plain_warnings(*categories):
    """Our warnings of ``categories`` as one ``Warning: <message>`` line each on stderr, instead of
    Python's ``file:line: UserWarning`` and the quoted source line."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, categories):
            click.echo(f"Warning: {message}", err=True)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


@click.group(invoke_without_command=True)
@click.option("--model", "-m", default=None, help="Bundled model name or checkpoint file to separate each track with.")
@click.option("--estimates", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of estimates to score instead: EST_DIR/<track>/<target>.wav.")
@click.option("--musdb", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="MUSDB18 root (holding train/ and/or test/).")
@click.option("--is-wav", is_flag=True, help="The MUSDB18 root is MUSDB18-HQ (WAV folders).")
@click.option("--references", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Track folders instead of MUSDB18: DIR/<track>/<source>.<ext>, mixture optional.")
@click.option("--subset", type=click.Choice(["train", "test"]), default=None,
              help="MUSDB18 subset. Default: with --estimates, whichever subset holds each estimated track; "
                   "with --model, test.")
@click.option("--split", type=click.Choice(["train", "valid"]), default=None,
              help="musdb's split of the train subset.")
@click.option("--tracks", multiple=True, metavar="NAME", help="Only these tracks (repeat the option).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the per-track museval JSON files, summary.json and summary.csv (required).")
@click.option("--backend", type=click.Choice(["fast", "museval"]), default="fast", show_default=True,
              help="fast: this package's BSSEval v4 in torch; museval: museval itself (slower, and not "
                   "stable where its systems are ill-conditioned).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tracks scored at once (worker threads sharing the CPU threads).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="Where the model and the fast backend run.")
@click.option("--force", is_flag=True, help="Score tracks again even if their JSON exists.")
@click.pass_context
def evaluate(ctx, model, estimates, musdb, is_wav, references, subset, split, tracks, out, backend, jobs, device, force):
    """Score separations with BSSEval v4 as SiSEC 2018 / museval do.

    Either separate each track with --model, or score --estimates made by anything. Writes one
    museval JSON per track (OUT/<subset>/<track>.json for MUSDB18, OUT/<track>.json for track
    folders), skips tracks already scored unless --force, and prints and saves the summary: per
    target cSDR (median over frames, then over tracks), uSDR (global SDR per track, mean over
    tracks), SIR, ISR, SAR, and the frames whose scores are ill-conditioned.

    `waveunet evaluate compare RUN_A RUN_B ... --out DIR` compares finished runs.
    """
    if ctx.invoked_subcommand is not None:  # `evaluate compare ...`
        return
    from ..device import resolve_device
    from ..evaluate.run import EvaluationConfig, evaluate_estimates, evaluate_model
    from ..evaluate.summary import format_table
    from ..evaluate.tracks import EstimateLengthWarning, open_references

    if (model is None) == (estimates is None):
        raise WaveUNetError("give either --model M (separate and score) or --estimates EST_DIR (score files)")
    if out is None:
        raise WaveUNetError("give the output folder: --out DIR")
    if is_wav and musdb is None:
        raise WaveUNetError("--is-wav applies to --musdb ROOT only")
    if musdb is not None and model is not None and subset is None and split is None:
        subset = "test"  # a model is scored on the test set unless told otherwise
    collection = open_references(musdb=musdb, is_wav=is_wav, subset=subset, split=split, references=references)
    device = resolve_device(device)
    config = EvaluationConfig(out=out, backend=backend, jobs=jobs, force=force, device=device)
    echo = lambda line: click.echo(line, err=True)  # noqa: E731 - progress on stderr, the table on stdout
    with plain_warnings(EstimateLengthWarning):
        if model is not None:
            from ..resolve import load_model

            network = load_model(model, device=device, kind="audio")
            result = evaluate_model(network, collection, config, tracks=tracks, device=device, echo=echo)
        else:
            result = evaluate_estimates(estimates, collection, config, tracks=tracks, echo=echo)
    click.echo(format_table(result.summary))
    click.echo(f"{len(result.scores)} track(s), {result.scored} scored now; "
               f"summary in {result.files[0]} and {result.files[1]}", err=True)


@evaluate.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for compare.json, compare.csv and boxplot.png.")
@click.option("--force", is_flag=True, help="Replace outputs of an earlier comparison in --out.")
def compare_command(runs, out, force):
    """Compare runs: per target the median SDR/SIR/ISR/SAR of each, paired Wilcoxon tests, box plots.

    Each RUN is a folder written by `waveunet evaluate`, or any folder of museval JSON files (one
    per track, e.g. SiSEC 2018's submissions). Tracks scored by only some runs are left out of the
    paired tests, with a warning.
    """
    from ..evaluate.compare import UnpairedTracksWarning, compare, format_comparison, write_comparison

    with plain_warnings(UnpairedTracksWarning):
        comparison = compare(runs)
    paths = write_comparison(comparison, out, force=force)
    click.echo(format_comparison(comparison))
    click.echo(f"wrote {', '.join(str(path) for path in paths)}", err=True)
