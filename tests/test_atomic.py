"""Atomic writes: single files, and groups of files that appear together or not at all."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from waveunet.atomic import TEMPORARY_NAME, AtomicGroup, atomic_path, check_destination
from waveunet.audio import open_stream, write_audio
from waveunet.errors import WaveUNetError

SR = 8000


def tone(seconds=0.1, channels=2):
    t = torch.arange(int(seconds * SR)) / SR
    return (0.5 * torch.sin(2 * np.pi * 440 * t)).expand(channels, -1).clone()


def put(group, path, audio):
    open_stream(group, path, SR, audio.shape[0]).write(audio)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            assert TEMPORARY_NAME.match(temporary.name) and temporary.parent == tmp_path
            raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic_path(target, ".png") as temporary:
        assert temporary.name.endswith(".partial.png")
        temporary.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_temporary_names_say_whose_they_are(tmp_path):
    with atomic_path(tmp_path / "vocals.wav") as temporary:
        match = TEMPORARY_NAME.match(temporary.name)
        assert match["name"] == "vocals.wav" and int(match["pid"]) == os.getpid()
        mask = os.umask(0)
        os.umask(mask)
        assert temporary.stat().st_mode & 0o777 == 0o666 & ~mask  # what a new file gets, not mkstemp's 0600
    assert not TEMPORARY_NAME.match("vocals.wav") and not TEMPORARY_NAME.match(".vocals.wav.part")


def test_check_destination_names_the_real_flag(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(WaveUNetError, match=r"x.wav: already exists \(use --force to replace it\)"):
        check_destination(tmp_path / "x.wav", force=False)
    check_destination(tmp_path / "x.wav", force=True)
    with pytest.raises(WaveUNetError, match="output folder does not exist"):
        check_destination(tmp_path / "missing" / "x.wav", force=False)


def test_group_writes_all_files_on_success(tmp_path):
    with AtomicGroup() as group:
        for name in ("vocals", "accompaniment"):
            put(group, tmp_path / f"{name}.wav", tone())
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accompaniment.wav", "vocals.wav"]


def test_group_writes_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicGroup() as group:
            put(group, tmp_path / "vocals.wav", tone())
            raise RuntimeError("separation failed half-way")
    assert list(tmp_path.iterdir()) == []


def test_group_refuses_existing_files_before_writing_any(tmp_path):
    existing = write_audio(tmp_path / "drums.wav", tone(channels=1), SR)
    with pytest.raises(WaveUNetError, match="drums.wav: already exists"):
        with AtomicGroup() as group:
            put(group, tmp_path / "bass.wav", tone())
            put(group, existing, tone())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drums.wav"]


def test_group_rolls_back_when_a_move_fails(tmp_path, monkeypatch):
    old = write_audio(tmp_path / "bass.wav", tone(channels=1), SR)
    before = old.read_bytes()
    real_replace, moves = os.replace, []

    def failing_replace(source, destination):
        # Let the backup and the first file through, then fail like a full disk would.
        moves.append(destination)
        if len(moves) == 3:
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    with pytest.raises(WaveUNetError, match="vocals.wav: cannot write .*no file of the group was written"):
        with AtomicGroup(force=True) as group:
            put(group, old, tone())
            put(group, tmp_path / "vocals.wav", tone())
            monkeypatch.setattr(os, "replace", failing_replace)
    monkeypatch.undo()
    assert old.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bass.wav"]


def test_group_refuses_a_folder_in_the_way(tmp_path):
    (tmp_path / "vocals.wav").mkdir()
    with pytest.raises(WaveUNetError, match="vocals.wav: is a folder"):
        with AtomicGroup(force=True) as group:
            put(group, tmp_path / "vocals.wav", tone())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]


def test_group_takes_any_writer(tmp_path):
    with AtomicGroup() as group:
        (group.add(tmp_path / "mask.png", ".png")).write_bytes(b"png")
        put(group, tmp_path / "vocals.wav", tone())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "vocals.wav"]


# ------------------------------------------------------------------------------ stale temporaries


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_only_our_temporaries_of_dead_processes_are_stale(tmp_path):
    from waveunet.atomic import Temporary, is_stale, remove_stale_temporaries

    dead = dead_pid()
    stale = tmp_path / f".vocals.wav.waveunet-{dead}-0123abcd.partial"
    stale.write_bytes(b"half a song")
    backup = tmp_path / f".bass.wav.waveunet-{dead}-89abcdef.partial.backup"  # bass.wav was being replaced
    backup.write_bytes(b"the old bass")
    other_backup = tmp_path / f".drums.wav.waveunet-{dead}-00000000.partial.backup"
    other_backup.write_bytes(b"old drums")
    (tmp_path / "drums.wav").write_bytes(b"new drums")  # the new one made it: the old copy goes
    live = Temporary(tmp_path / "other.wav")  # this process's: alive
    users = [".vocals.wav.part", "vocals.wav", f".vocals.wav.waveunet-{dead}.partial", f"x.waveunet-{dead}-0123abcd.partial"]
    for name in users:
        (tmp_path / name).write_bytes(b"the user's")
    assert is_stale(stale) and not is_stale(live.path) and not is_stale(tmp_path / users[0])
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale, backup, other_backup])
    assert (tmp_path / "bass.wav").read_bytes() == b"the old bass"
    assert (tmp_path / "drums.wav").read_bytes() == b"new drums"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*users, live.path.name, "bass.wav", "drums.wav"])
    live.discard()


def test_a_locked_temporary_is_not_stale_whatever_its_process_id(tmp_path):
    from waveunet.atomic import is_stale

    # as a live process in another PID namespace would hold it: its id means nothing here, its lock does
    path = tmp_path / f".vocals.wav.waveunet-{dead_pid()}-0123abcd.partial"
    path.write_bytes(b"being written")
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, os, time; fd = os.open({str(path)!r}, os.O_RDONLY); "
                               f"fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert not is_stale(path)
    finally:
        holder.kill()
        holder.wait()
    assert is_stale(path)


def test_a_file_that_appears_meanwhile_is_named_with_the_real_flag(tmp_path):
    with pytest.raises(WaveUNetError) as error:
        with AtomicGroup() as group:
            put(group, tmp_path / "vocals.wav", tone())
            (tmp_path / "vocals.wav").write_bytes(b"another process's")
    assert str(error.value) == (f"{tmp_path / 'vocals.wav'}: appeared while this run was writing it (another process "
                                f"writing the same file?); kept it (use --force to replace it)")
    assert "--overwrite" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]
    assert (tmp_path / "vocals.wav").read_bytes() == b"another process's"


def test_signals_wait_for_the_end_of_a_held_step():
    from waveunet.atomic import signals_held

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    # Ctrl-C as in an interactive process (run in the background, the suite inherits SIGINT ignored)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with signals_held():
            signal.raise_signal(signal.SIGTERM)
            assert seen == []  # noted, not acted on
        assert seen == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                signal.raise_signal(signal.SIGINT)
                seen.append("finished the step")
        assert seen[-1] == "finished the step"
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def test_folders_made_for_a_failed_write_are_removed_again(tmp_path):
    from waveunet.atomic import make_folders, remove_empty_folders

    (tmp_path / "kept").mkdir()
    created = make_folders(tmp_path / "kept" / "a" / "b")
    assert created == [tmp_path / "kept" / "a", tmp_path / "kept" / "a" / "b"]
    remove_empty_folders(created)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(WaveUNetError, match="file/x: cannot create output folder"):
        make_folders(tmp_path / "file" / "x")
