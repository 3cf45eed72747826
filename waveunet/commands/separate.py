"""``waveunet separate INPUT... [--model NAME_OR_CHECKPOINT] [--out DIR] ...``: songs into sources."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import WaveUNetError

#: said once on stderr when the bundled demonstration model separates
DEMO_NOTICE = (
    "Note: the bundled 'demo' model is a small demonstration model trained on seconds of audio; expect rough "
    "results. For a real one, train a recipe on MUSDB18 (`waveunet train recipes/M4.toml --out runs/m4 ...`) "
    "or import a pretrained PyTorch Wave-U-Net checkpoint (`waveunet import-checkpoint`), then pass it with --model."
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", default="demo", show_default=True,
              help="Bundled model name, checkpoint file (from `waveunet train` or `waveunet import-checkpoint`) "
                   "or ONNX file (from `waveunet export`, run by onnxruntime).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder: <out>/<track name>/<source>.<format>  [default: separated/<model name>]")
@click.option("--format", "format_", type=click.Choice(["wav", "flac"]), default="wav", show_default=True)
@click.option("--bits", type=click.Choice(["16", "24", "32"]), default="16", show_default=True,
              help="Bits per sample (32: float WAV).")
@click.option("--sources", default=None, metavar="NAME,...", help="Stems to write: some of the model's sources, or of --two-stems' two (default: all).")
@click.option("--two-stems", metavar="SOURCE", default=None,
              help="Write only SOURCE and no_SOURCE (the input minus SOURCE), e.g. vocals + no_vocals for karaoke.")
@click.option("--shifts", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Average N separations on shifted down-sampling grids (test-time augmentation; N times slower).")
# (apply.DIFFERENCE_MODES and DEFAULT_DIFFERENCE, spelled out: importing the engine here would import torch for --help)
@click.option("--difference", type=click.Choice(["input", "model"]), default="input", show_default=True,
              help="Difference-output models: input = their last source is the input minus the others, at the "
                   "input's rate, so the stems sum to the input; model = the model's own, band-limited to its rate.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps", "auto"]), default="auto", show_default=True,
              help="auto: CUDA, then Apple MPS, then the CPU.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--downmix", is_flag=True, help="Average inputs with more than two channels to mono.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def separate(inputs, model, out, format_, bits, sources, two_stems, shifts, difference, device, force, downmix,
             no_progress):
    """Separate each INPUT (wav, flac, ogg, mp3; any rate, mono or stereo) into its sources.

    A bad input is reported on one line and skipped; the others are still separated, and the exit
    code is 1.
    """
    from ..device import resolve_device
    from ..resolve import resolve_model
    from ..separation import separate_files
    from ..separation.apply import shift_offsets, stem_names

    bits = int(bits)
    if format_ == "flac" and bits == 32:
        raise WaveUNetError("--bits 32: FLAC stores at most 24 bits; use --bits 24 or --format wav")
    source = resolve_model(model, kind="audio")
    # onnxruntime has its own devices: an ONNX model takes --device as given (auto: its CUDA provider if any)
    network = source.load(device if source.onnx else resolve_device(device, what="--device", mps=True))
    name = source.name
    if source.is_demo:
        click.echo(DEMO_NOTICE, err=True)
    engine = dict(two_stems=two_stems, shifts=shifts, difference=difference)
    stems = stem_names(network.config, **engine)  # refuses a bad --two-stems or --shifts before any work
    shift_offsets(network.length_step, shifts)
    chosen = None
    if sources is not None:
        chosen = [s.strip() for s in sources.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in stems]
        if unknown or not chosen:
            raise WaveUNetError(f"--sources {sources}: the stems are {', '.join(stems)}")
    out = out if out is not None else Path("separated") / name
    _, errors = separate_files(inputs, network, out, echo=lambda line, error: click.echo(line, err=error),
                               sources=chosen, format=format_, bits=bits, device=device, force=force,
                               downmix=downmix, progress=not no_progress, **engine)
    if errors:
        raise WaveUNetError(f"{len(errors)} of {len(inputs)} input(s) failed (see the errors above)")
