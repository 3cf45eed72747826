"""What to separate: the audio files named on the command line, and those in the folders named there.

A folder stands for the audio files directly in it, or (``recursive``) in it and all its
subfolders; each file found in a subfolder keeps that subfolder (:attr:`Input.folder`), which the
outputs mirror under the output folder. Hidden files and folders (our own temporary files among
them) and the output folder itself are never taken as inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Sequence

from ..errors import WaveUNetError

#: extensions of the audio files a folder is searched for (what libsndfile reads)
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".w64",
                    ".rf64", ".caf")


@dataclass(frozen=True)
class Input:
    """One file to separate.

    Attributes:
        path: the file.
        folder: its folder relative to the folder it was found in (mirrored under the output
            folder); empty for a file named directly.
    """

    path: Path
    folder: PurePath = PurePath()


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def find_inputs(paths: Sequence[str | os.PathLike], recursive: bool = False, exclude: str | os.PathLike | None = None
                ) -> tuple[list[Input], list[tuple[Path, WaveUNetError]]]:
    """The files to separate for ``paths`` (files and folders), in the order given, folders sorted.

    A file is taken whatever its name (reading it tells whether it is audio; a missing one fails
    then, on its own line). ``exclude`` (the output folder) is never searched. The same file
    named twice is taken once. Returns the inputs, and ``(folder, error)`` for each folder without audio files.
    """
    exclude_path = Path(exclude).resolve() if exclude is not None else None
    inputs, problems, seen = [], [], set()

    def take(item: Input) -> None:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            inputs.append(item)

    for given in map(Path, paths):
        if not given.is_dir():
            take(Input(given))
            continue
        found = []
        for root, folders, files in os.walk(given):
            root_path = Path(root)
            folders[:] = sorted(f for f in folders if not f.startswith(".")
                                and not _inside((root_path / f).resolve(), exclude_path)) if recursive else []
            relative = root_path.relative_to(given)
            found += [Input(root_path / name, PurePath(relative)) for name in sorted(files) if is_audio_name(Path(name))]
        if not found:
            nested = "" if recursive else _nested_hint(given)
            problems.append((given, WaveUNetError(f"{given}: no audio files in this folder "
                                                  f"({', '.join(e[1:] for e in AUDIO_EXTENSIONS[:7])}, ...){nested}")))
        for item in found:
            take(item)
    return inputs, problems


def _nested_hint(folder: Path) -> str:
    for _, _, files in os.walk(folder):
        if any(is_audio_name(Path(name)) for name in files):
            return "; its subfolders have some: add -r"
    return ""
