"""Atomic file writes: a file holds either its old content or all of the new, never a part.

Everything the toolkit writes for the user (checkpoints, separated audio, masks, scores, run-folder
files) goes to a temporary file beside its destination first and is renamed into place only when
complete; ``os.replace`` is atomic within one file system. One file: :func:`atomic_path`. Files
that must appear together (the stems of a song, a mask and its overlay): :class:`AtomicGroup`.

Temporary files are hidden and named ``.<name>.waveunet-<pid>-<token>.partial<suffix>``, so that
they can be told from anything else in the folder (:data:`TEMPORARY_NAME`), and which process made
them. The process holds an exclusive ``flock`` on each of its temporary files while it exists, so
that a temporary file left behind by a killed process (``kill -9``, a crash, a power cut) can be
told from one being written right now, even by a process in another PID namespace:
:func:`remove_stale_temporaries` removes those whose process is gone, and only those.

A full disk is reported as :class:`NoSpaceError`, naming the folder and what the files need.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import WaveUNetError
from .progress import format_bytes

try:
    import fcntl
except ImportError:  # Windows: no flock; a temporary file's process id alone tells whether it is stale
    fcntl = None

#: the names of our temporary files: hidden, the destination's name, the writing process's id
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.waveunet-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.partial(?P<suffix>\.\w+)?$")
#: the suffix of the copy of a replaced file kept while a group is moved into place
BACKUP = ".backup"
#: what the operating system says when a file system is full (or the user's quota is)
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoSpaceError(WaveUNetError):
    """The output device is full, or has less free space than the files to write need.

    ``needed``: bytes the files need (None if unknown); ``what``: which files, for the message;
    ``ahead``: found before writing (free space checked), not by a failed write.
    """

    def __init__(self, folder: str | os.PathLike, needed: int | None = None, what: str = "the outputs",
                 ahead: bool = False):
        self.folder, self.needed = Path(folder), needed
        problem = "not enough free space on the device" if ahead else "no space left on the device"
        need = f"{what} need {'about ' if not ahead and needed else ''}{format_bytes(needed)}, " if needed else ""
        super().__init__(f"{self.folder}: {problem} ({need}{format_bytes(free_space(self.folder))} free)")


def free_space(folder: str | os.PathLike) -> int:
    """Bytes free for this user on the file system that holds ``folder`` (or would: its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def check_free_space(folder: str | os.PathLike, needed: int, what: str = "the outputs") -> None:
    """:class:`NoSpaceError` unless ``folder``'s file system has ``needed`` bytes free."""
    if free_space(folder) < needed:
        raise NoSpaceError(folder, needed, what, ahead=True)


@contextmanager
def signals_held():
    """Within, SIGINT and SIGTERM wait; after, they take effect as they would have.

    For steps an exception must not cut in two: moving a group's files into place, and libsndfile
    encoding, which calls back into Python to write (an exception a signal handler raised there,
    Ctrl-C's ``KeyboardInterrupt``, would be swallowed by cffi and turn into a failed write). A
    signal is only noted meanwhile (blocking it would not do: torch's threads would take it, and
    Python would run the handler at once anyway); afterwards the handler it would have met runs.
    """
    if threading.current_thread() is not threading.main_thread():  # handlers run in the main thread only
        yield
        return
    received: list[tuple[int, object]] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append((signum, frame)))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum, frame in received[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Temporary:
    """A new, empty, hidden file beside ``destination``, locked by this process until released.

    It has the permissions a new file would get (not ``mkstemp``'s 0600). ``suffix`` (e.g.
    ``.png``) ends the name, for writers that look at the extension.
    """

    def __init__(self, destination: str | os.PathLike, suffix: str = ""):
        self.destination = Path(destination)
        while True:
            self.path = self.destination.with_name(
                f".{self.destination.name}.waveunet-{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}")
            try:
                self._fd: int | None = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
            except FileExistsError:
                continue
            break
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: the process id still tells
                pass

    def release(self) -> None:
        """Drop the lock (the file stays)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def place(self) -> None:
        """Move the file onto its destination."""
        os.replace(self.path, self.destination)
        self.release()

    def discard(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)
        self.release()


def _write_error(folder: Path, error: OSError, doing: str) -> WaveUNetError:
    if error.errno in NO_SPACE:
        return NoSpaceError(folder)
    return WaveUNetError(f"{folder}: cannot {doing} ({error.strerror})")


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
    try:
        temporary = Temporary(path, suffix)
    except OSError as error:
        raise _write_error(path.parent, error, "write to the folder") from None
    try:
        yield temporary.path
        temporary.place()
    except BaseException:
        temporary.discard()
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
        self._pending: list[tuple[Temporary, Any]] = []  # (temporary, writer or None)

    def add(self, path: str | os.PathLike, suffix: str = "", opener: Callable[[Path], Any] | None = None):
        """Reserve ``path`` in the group; returns the temporary path to write, or ``opener(temporary)``."""
        path = Path(path)
        if any(temporary.destination == path for temporary, _ in self._pending):
            raise WaveUNetError(f"{path}: written twice in one group")
        check_destination(path, self.force)
        try:
            temporary = Temporary(path, suffix)
        except OSError as error:
            raise _write_error(path.parent, error, "write to the output folder") from None
        writer = None
        try:
            writer = opener(temporary.path) if opener is not None else None
        except BaseException:
            temporary.discard()
            raise
        self._pending.append((temporary, writer))
        return temporary.path if opener is None else writer

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        pending, self._pending = self._pending, []
        if exc_type is not None:
            _discard(pending)
            return
        try:
            for _, writer in pending:
                if writer is not None:
                    writer.close()
            for temporary, _ in pending:
                if temporary.destination.exists() and not self.force:
                    # checked when the group began: another process wrote it meanwhile
                    raise WaveUNetError(f"{temporary.destination}: appeared while this run was writing it (another "
                                        f"process writing the same file?); kept it (use --force to replace it)")
                check_destination(temporary.destination, self.force)
        except BaseException:
            _discard(pending)
            raise
        _commit(pending)


def _discard(pending: list[tuple[Temporary, Any]]) -> None:
    for temporary, writer in pending:
        discard = getattr(writer, "discard", None)
        if discard is not None:
            try:
                discard()
            except Exception:  # the file goes away anyway; the original error matters more
                pass
        temporary.discard()


def _commit(pending: list[tuple[Temporary, Any]]) -> None:
    """Move every temporary file into place; on failure undo the moves done and restore what they replaced."""
    with signals_held():  # Ctrl-C must not leave the group half in place
        _move_into_place(pending)


def _move_into_place(pending: list[tuple[Temporary, Any]]) -> None:
    placed: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
    destination = pending[0][0].destination if pending else None
    try:
        for temporary, _ in pending:
            destination, backup = temporary.destination, None
            if destination.exists():
                reserved = Temporary(destination, BACKUP)
                reserved.release()
                backup = reserved.path
                os.replace(destination, backup)
            placed.append((destination, backup))
            temporary.place()
    except OSError as error:
        for moved, backup in reversed(placed):
            moved.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, moved)
        _discard(pending)
        reason = "no space left on the device" if error.errno in NO_SPACE else error.strerror
        raise WaveUNetError(f"{destination}: cannot write ({reason}); no file of the group was written") from None
    for _, backup in placed:
        if backup is not None:
            backup.unlink(missing_ok=True)


# --------------------------------------------------------------------------- stale temporaries


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _locked_by_another(path: Path) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system: the process id alone tells
        return False
    finally:
        os.close(fd)
    return False


def is_stale(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of our temporary files whose process is gone.

    Gone: no process of its id runs here, and no process holds the file's lock. A live process
    with a reused id keeps the file (it is removed once that process ends).
    """
    path = Path(path)
    match = TEMPORARY_NAME.match(path.name)
    if match is None or not path.is_file():
        return False
    return not _process_alive(int(match["pid"])) and not _locked_by_another(path)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed processes left in ``folder`` (not its subfolders).

    Only files named as :data:`TEMPORARY_NAME` says, and only stale ones (:func:`is_stale`). A
    stale backup (the old content of a file that was being replaced when its process died) is moved
    back in place if that file is missing, and deleted otherwise. Returns the files removed or restored.
    """
    folder = Path(folder)
    try:
        candidates = sorted(p for p in folder.iterdir() if TEMPORARY_NAME.match(p.name))
    except OSError:
        return []
    done = []
    for path in candidates:
        if not is_stale(path):
            continue
        match = TEMPORARY_NAME.match(path.name)
        destination = folder / match["name"]
        try:
            if match["suffix"] == BACKUP and not destination.exists():
                os.replace(path, destination)
            else:
                path.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
        done.append(path)
    return done


# --------------------------------------------------------------------------- folders


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the folders created, outermost first.

    Pass them to :func:`remove_empty_folders` when the work fails, to leave nothing behind.
    """
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created = []
    try:
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:  # made meanwhile by another process: fine if it is a folder
                if not path.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "a file is in the way") from None
                continue
            created.append(path)
    except OSError as error:
        remove_empty_folders(created)
        if error.errno in NO_SPACE:
            raise NoSpaceError(folder) from None
        raise WaveUNetError(f"{folder}: cannot create output folder ({error.strerror})") from None
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: cannot create output folder (a file is in the way)")
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` that is empty, innermost first (what :func:`make_folders` created)."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): keep it
            pass
