"""``waveunet export MODEL -o model.onnx [--opset N] [--force]``: a Wave-U-Net as an ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import WaveUNetError


@click.command()
@click.argument("model")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The ONNX file to write (e.g. model.onnx).")
@click.option("--opset", type=click.IntRange(14, 20), default=None,
              help="ONNX operator set, 14 to 20 (torch's TorchScript exporter)  [default: 17]")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def export(model, out, opset, force):
    """Export MODEL (a preset, a bundled model or a checkpoint) to ONNX.

    The file takes any batch size and any of the model's valid input lengths, and its metadata gives
    the rate, the sources, the lengths and the context; `waveunet separate --model FILE.onnx` runs it
    through onnxruntime. The export is checked against PyTorch before the file is written.
    """
    from ..export import OPSET, export_onnx
    from ..resolve import resolve_model

    if out.suffix.lower() != ".onnx":
        raise WaveUNetError(f"{out}: an ONNX file name ends in .onnx")
    source = resolve_model(model, kind="audio", presets=True)
    if source.onnx:
        raise WaveUNetError(f"{model}: is an ONNX file already")
    network = source.load("cpu")
    if source.checkpoint is None:
        click.echo(f"Note: {model} is a preset: its weights are random (untrained); export a checkpoint for a "
                   f"trained model", err=True)
    done = export_onnx(network, out, metadata=source.metadata, opset=opset or OPSET, force=force)
    m = done.metadata
    click.echo(f"{out}: {model}, {done.bytes / 1e6:.1f} MB; {m['sample_rate']} Hz, {m['sources'].replace(',', ' + ')}; "
               f"{m['input'].split(':')[0]} [batch, {m['channels']}, {m['valid_input_lengths']}] -> "
               f"estimates [batch, {len(network.config.sources)}, {m['channels']}, {m['output_length_of_input']}]; "
               f"onnxruntime matches PyTorch within {done.max_abs_diff:.0e}")
