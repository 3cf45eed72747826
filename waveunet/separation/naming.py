"""Where each stem of each input goes: the ``--filename`` template, and the checks that no two
outputs (or an output and an input) are the same file, made before any work starts.

A template is a relative path with Demucs' keys, plus ``{model}``:

- ``{track}``: the input's name without its extension (``song`` for ``a/song.wav``);
- ``{trackext}``: the input's extension without the dot (``wav``);
- ``{stem}``: the stem (``vocals``);
- ``{ext}``: the output format's extension (``flac``);
- ``{model}``: the model's name (``demo``, or a checkpoint's file name without ``.pt``).

The default, ``{track}/{stem}.{ext}``, gives ``<out>/<track>/<stem>.<ext>``. A file found in a
subfolder of a folder given with ``-r`` goes into the same subfolder of ``<out>``.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath

from ..errors import WaveUNetError
from .inputs import Input

DEFAULT_FILENAME = "{track}/{stem}.{ext}"
KEYS = ("track", "trackext", "stem", "ext", "model")


def check_template(template: str) -> None:
    """:class:`WaveUNetError` unless ``template`` is a relative path using only :data:`KEYS`."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as error:
        raise WaveUNetError(f"--filename {template!r}: {error} (write keys as {{track}}; a literal brace as {{{{)") from None
    for name, spec, conversion in fields:
        if name not in KEYS or spec or conversion:
            raise WaveUNetError(f"--filename {template!r}: unknown key {{{name}{'!' + conversion if conversion else ''}"
                                f"{':' + spec if spec else ''}}} (keys: {', '.join('{' + k + '}' for k in KEYS)})")
    path = PurePath(template)
    if not template.strip() or path.is_absolute() or ".." in path.parts or template.endswith(("/", "\\")):
        raise WaveUNetError(f"--filename {template!r}: must be a relative file path inside the output folder "
                            f"(no leading /, no ..)")


def render(template: str, track: Path, stem: str, ext: str, model: str) -> PurePath:
    """The relative path ``template`` gives for ``stem`` of the input file ``track``."""
    values = {"track": track.stem, "trackext": track.suffix[1:], "stem": stem, "ext": ext, "model": model}
    rendered = PurePath(template.format(**values))
    if ".." in rendered.parts or rendered.is_absolute() or not rendered.name:
        raise WaveUNetError(f"{track}: --filename {template!r} makes {str(rendered)!r}, not a file inside the output folder")
    return rendered


def plan_outputs(inputs: Sequence[Input], stems: Sequence[str], out: str | Path, template: str = DEFAULT_FILENAME,
                 ext: str = "wav", model: str = "model") -> dict[Input, dict[str, Path]]:
    """``{input: {stem: output file}}`` for every input, refusing any two that would be one file.

    Raises :class:`WaveUNetError` in one line naming both inputs (or both stems) that would share
    a file, and saying how to tell them apart; or naming an input that an output would overwrite.
    """
    check_template(template)
    out = Path(out)
    plans: dict[Input, dict[str, Path]] = {}
    owners: dict[Path, tuple[Input, str]] = {}
    inputs_by_file = {item.path.resolve(): item for item in inputs}
    for item in inputs:
        outputs = {}
        for stem in stems:
            path = out / item.folder / render(template, item.path, stem, ext, model)
            key = path.resolve()
            if key in owners:
                raise WaveUNetError(_clash(template, owners[key], (item, stem), path))
            if key in inputs_by_file:
                raise WaveUNetError(f"{inputs_by_file[key].path}: is an input, and {item.path}'s {stem} would be written "
                                    f"over it; choose another --out or --filename")
            owners[key] = (item, stem)
            outputs[stem] = path
        plans[item] = outputs
    return plans


def _clash(template: str, first: tuple[Input, str], second: tuple[Input, str], path: Path) -> str:
    (a, stem_a), (b, stem_b) = first, second
    if a == b:
        return (f"--filename {template!r}: {a.path}'s {stem_a} and {stem_b} would both be written to {path}; "
                f"put {{stem}} in it")
    if "{track}" not in template:
        hint = 'put {track} in --filename (e.g. --filename "{track}/{stem}.{ext}")'
    elif a.path.name != b.path.name and "{trackext}" not in template:
        hint = 'tell their extensions apart with --filename "{track}.{trackext}/{stem}.{ext}"'
    else:
        common = os.path.commonpath([str(a.path.parent), str(b.path.parent)]) \
            if a.path.is_absolute() == b.path.is_absolute() else ""
        folder = f"the folder that holds both ({common or '.'})" if common or not a.path.is_absolute() else \
            "a folder that holds both"
        hint = (f"separate them into different --out folders, or separate {folder} with -r, "
                f"which mirrors its subfolders under --out")
    return f"{a.path} and {b.path} would both be written to {path}: {hint}"


def output_folders(plans: Mapping[Input, Mapping[str, Path]]) -> list[Path]:
    """Every folder the outputs go into, each once, in order."""
    return list(dict.fromkeys(path.parent for outputs in plans.values() for path in outputs.values()))
