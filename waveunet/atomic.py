"""Atomic file writes: a file holds either its old content or all of the new, never a part.

Everything the toolkit writes for the user (checkpoints, separated audio, masks, scores, run-folder
files) goes to a temporary file beside its destination first and is renamed into place only when
complete; ``os.replace`` is atomic within one file system.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """An empty temporary file in ``path``'s folder, with the permissions a new file would get."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes owner-only files
    return Path(name)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is deleted.

    ``suffix`` lets writers that choose the format from the extension (soundfile, Pillow) see it.
    """
    path = Path(path)
    temporary = temporary_beside(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
