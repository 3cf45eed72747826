"""``waveunet separate INPUT... [--model NAME_OR_CHECKPOINT] [--out DIR] ...``: songs into stems.

The options are two lists: :data:`OPTIONS` (files, names, formats: :mod:`waveunet.separation.files`)
and :data:`ENGINE_OPTIONS` (how the separation itself runs: :mod:`waveunet.separation.apply`). The
command names the first list's values; every other value is an engine option and goes, under its
own name, to ``separate_stream`` / ``stem_names`` (through ``separate_files``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import WaveUNetError

#: said once on stderr, after a run that separated something with the bundled demonstration model
DEMO_NOTICE = (
    "Note: the bundled 'demo' model is a small demonstration model trained on seconds of audio; expect rough "
    "results. For a real one, train a recipe on MUSDB18 (`waveunet train recipes/M4.toml --out runs/m4 ...`) "
    "or import a pretrained PyTorch Wave-U-Net checkpoint (`waveunet import-checkpoint`), then pass it with --model."
)

#: the options of the file layer, in --help order
OPTIONS = [
    click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path)),
    click.option("--model", "-m", default="demo", show_default=True,
                 help="Bundled model name, checkpoint file (from `waveunet train` or `waveunet import-checkpoint`) "
                      "or ONNX file (from `waveunet export`, run by onnxruntime)."),
    click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Output folder  [default: separated/<model name>]"),
    click.option("--recursive", "-r", is_flag=True,
                 help="Also separate the audio files in the subfolders of INPUT folders, mirroring them under --out."),
    click.option("--filename", default="{track}/{stem}.{ext}", show_default=True,
                 help="Output file names under --out; keys {track}, {trackext}, {stem}, {ext}, {model}."),
    click.option("--format", "format_", type=click.Choice(["wav", "flac", "mp3", "ogg", "opus"]), default="wav",
                 show_default=True, help="Output format (opus: at 48 kHz unless the input is at 8/12/16/24 kHz)."),
    click.option("--bits", type=click.Choice(["16", "24", "32"]), default=None,
                 help="Bits per sample of wav/flac (32: float wav)  [default: 16]"),
    click.option("--quality", type=click.FloatRange(0, 10), default=None, metavar="Q",
                 help="mp3/ogg/opus quality, 10 best (libsndfile's compression level 1 - quality/10)  "
                      "[default: libsndfile's]"),
    click.option("--sources", default=None, metavar="NAME,...", help="Stems to write (default: all the model's)."),
    click.option("--device", type=click.Choice(["cpu", "cuda", "mps", "auto"]), default="auto", show_default=True,
                 help="auto: CUDA, then Apple MPS, then the CPU."),
    click.option("--force", is_flag=True, help="Separate again and replace existing outputs."),
    click.option("--downmix", is_flag=True, help="Average inputs with more than two channels to mono."),
    click.option("--no-progress", is_flag=True, help="No progress bars."),
]
#: the options of the separation engine: their values go to separate_stream / stem_names as keywords
ENGINE_OPTIONS = [
    click.option("--two-stems", metavar="SOURCE", default=None,
                 help="Write only SOURCE and no_SOURCE (the input minus SOURCE), e.g. vocals + no_vocals for karaoke."),
    click.option("--shifts", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                 help="Average N separations on shifted down-sampling grids (test-time augmentation; N times slower)."),
    click.option("--difference", type=click.Choice(["input", "model"]), default="input", show_default=True,
                 help="Difference-output models: input = their last source is the input minus the others, at the "
                      "input's rate, so the stems sum to the input; model = the model's own, band-limited to its rate."),
]


def _with_options(command):
    for option in reversed(OPTIONS + ENGINE_OPTIONS):
        command = option(command)
    return command


@click.command()
@_with_options
@click.pass_context
def separate(ctx, inputs, model, out, recursive, filename, format_, bits, quality, sources, device, force, downmix,
             no_progress, **engine):
    """Separate each INPUT (an audio file: wav, flac, ogg, opus, mp3, any rate, mono or stereo; or a
    folder of them) into its stems.

    A bad input is reported on one line and skipped; the others are still separated, and the exit
    code is 1. Inputs whose outputs are all there are skipped, so a rerun resumes an interrupted run.
    Ctrl-C or SIGTERM stops at once, leaving only finished files (exit code 130 or 143).
    """
    from ..audio.writing import LOSSLESS
    from ..device import resolve_device
    from ..resolve import resolve_model
    from ..separation import separate_files
    from ..separation.apply import shift_offsets, stem_names

    if bits is not None and format_ not in LOSSLESS:
        raise WaveUNetError(f"--bits {bits}: {format_} is lossy; --bits applies to wav and flac (use --quality)")
    source = resolve_model(model, kind="audio")
    # onnxruntime has its own devices: an ONNX model takes --device as given (auto: its CUDA provider if any)
    network = source.load(device if source.onnx else resolve_device(device, what="--device", mps=True))
    name = source.name
    stem_names(network.config, two_stems=engine["two_stems"], difference=engine["difference"])  # a bad --two-stems: before any work
    shift_offsets(network.length_step, engine["shifts"])
    chosen = None if sources is None else [s.strip() for s in sources.split(",") if s.strip()]
    if chosen == []:
        raise WaveUNetError(f"--sources {sources!r}: name at least one stem")
    out = out if out is not None else Path("separated") / name
    result = separate_files(inputs, network, out, echo=lambda line, error: click.echo(line, err=error),
                            recursive=recursive, sources=chosen, format=format_, bits=int(bits or 16), quality=quality,
                            filename=filename, model_name=name, device=device, force=force, downmix=downmix,
                            progress=not no_progress, **engine)
    if source.is_demo and result.done:
        click.echo(DEMO_NOTICE, err=True)
    if result.failed:
        ctx.exit(1)
