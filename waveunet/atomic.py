"""Atomic file writes: a file holds either its old content or all of the new, never a part.

Everything the toolkit writes for the user (checkpoints, separated audio, masks, scores, run-folder
files) goes to a temporary file beside its destination first and is renamed into place only when
complete; ``os.replace`` is atomic within one file system. One file: :func:`atomic_path`. Files
that must appear together (the stems of a song, a mask and its overlay): :class:`AtomicGroup`.

Temporary files are hidden and named ``.<name>.waveunet-<pid>-<token>.partial<suffix>``, so that
they can be told from anything else in the folder (:data:`TEMPORARY_NAME`), and which process made
them.
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import WaveUNetError

#: the names of our temporary files: hidden, the destination's name, the writing process's id
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.waveunet-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.partial(?P<suffix>\.\w+)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike, suffix: str = "") -> Path:
    """A new, empty temporary file in ``path``'s folder, with the permissions a new file would get.

    ``suffix`` (e.g. ``.png``) ends the name, for writers that look at the extension.
    """
    path = Path(path)
    while True:
        temporary = path.with_name(f".{path.name}.waveunet-{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}")
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
        except FileExistsError:
            continue
        os.close(fd)
        return temporary


def check_destination(path: str | os.PathLike, force: bool) -> None:
    """Refuse to write ``path`` where that would replace a file without ``force``, or cannot work.

    Raises :class:`~waveunet.errors.WaveUNetError` naming the file (or its folder).
    """
    path = Path(path)
    if path.is_dir():
        raise WaveUNetError(f"{path}: is a folder, not a file")
    if path.exists() and not force:
        raise WaveUNetError(f"{path}: already exists (use --force to replace it)")
    folder = path.parent
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WaveUNetError(f"{folder}: output folder is not writable")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception it is deleted."""
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


class AtomicGroup:
    """Several files that appear together or not at all.

    :meth:`add` reserves a temporary file beside each destination; leaving the ``with`` block
    without an exception checks every destination again (a file may have appeared meanwhile),
    then moves all of them into place; an exception, or a failed move, deletes the temporary files
    and puts back whatever was replaced::

        with AtomicGroup(force=False) as group:
            for source, audio in estimates.items():
                write(group.add(out / f"{source}.wav"), audio)

    ``add(path, opener=...)`` hands the temporary path to ``opener`` and returns what it returns:
    a writer with ``close()`` (called before the group commits) and optionally ``discard()``
    (called instead, on failure), such as a streaming audio encoder.
    """

    def __init__(self, force: bool = False):
        self.force = force
        self._pending: list[tuple[Path, Path, Any]] = []  # (temporary, destination, writer or None)

    def add(self, path: str | os.PathLike, suffix: str = "", opener: Callable[[Path], Any] | None = None):
        """Reserve ``path`` in the group; returns the temporary path to write, or ``opener(temporary)``."""
        path = Path(path)
        if any(destination == path for _, destination, _ in self._pending):
            raise WaveUNetError(f"{path}: written twice in one group")
        check_destination(path, self.force)
        try:
            temporary = temporary_beside(path, suffix)
        except OSError as error:
            raise WaveUNetError(f"{path.parent}: cannot write to the output folder ({error.strerror})") from None
        writer = None
        try:
            writer = opener(temporary) if opener is not None else None
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._pending.append((temporary, path, writer))
        return temporary if opener is None else writer

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        pending, self._pending = self._pending, []
        if exc_type is not None:
            _discard(pending)
            return
        try:
            for _, _, writer in pending:
                if writer is not None:
                    writer.close()
            for _, destination, _ in pending:
                check_destination(destination, self.force)
        except BaseException:
            _discard(pending)
            raise
        _commit(pending)


def _discard(pending: list[tuple[Path, Path, Any]]) -> None:
    for temporary, _, writer in pending:
        discard = getattr(writer, "discard", None)
        if discard is not None:
            try:
                discard()
            except Exception:  # the file goes away anyway; the original error matters more
                pass
        temporary.unlink(missing_ok=True)


def _commit(pending: list[tuple[Path, Path, Any]]) -> None:
    """Move every temporary file into place; on failure undo the moves done and restore what they replaced."""
    placed: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
    destination = pending[0][1] if pending else None
    try:
        for temporary, destination, _ in pending:
            backup = None
            if destination.exists():
                backup = temporary_beside(destination, ".backup")
                os.replace(destination, backup)
            placed.append((destination, backup))
            os.replace(temporary, destination)
    except OSError as error:
        for moved, backup in reversed(placed):
            moved.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, moved)
        _discard(pending)
        raise WaveUNetError(f"{destination}: cannot write ({error.strerror}); no file of the group was written") from None
    for _, backup in placed:
        if backup is not None:
            backup.unlink(missing_ok=True)
