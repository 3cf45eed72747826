"""``waveunet separate`` under faults, as a user meets them: real ``waveunet`` subprocesses killed
mid-way by SIGKILL, SIGTERM and SIGINT, then run again; two processes writing the same outputs; a
full disk (a real tmpfs where the test may mount one, else a write patched to fail with ENOSPC);
and the exact one-line messages and exit codes of failures."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import waveunet
import waveunet.atomic
from waveunet.atomic import TEMPORARY_NAME, Temporary
from waveunet.audio.writing import _ReportingFile, encoded_bytes
from waveunet.cli import main
from waveunet.progress import format_bytes

RATE = 22050  # the test model's rate: no resampling, so the work is the network's
LONG = 20.0  # seconds: long enough to be caught mid-way (its second half), short enough to run again quickly


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = waveunet.build_model("M4", levels=6, features=8).eval()
    return waveunet.save_model(model, tmp_path_factory.mktemp("ckpt") / "small.pt")


def write_song(path, seconds=1.0, rate=RATE, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), 2)).astype(np.float32)
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


def as_in_a_terminal() -> None:
    """A child's SIGINT as a shell gives a foreground command: default. Run in the background
    (``&``, nohup, some CI runners) the tests' own process ignores SIGINT, a child inherits that,
    and Python then rightly ignores Ctrl-C too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args) -> subprocess.Popen:
    """A real ``waveunet separate`` process."""
    command = [sys.executable, "-c", "from waveunet.cli import main; main(prog_name='waveunet')", "separate",
               *map(str, args), "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=as_in_a_terminal)


def run(*args):
    return CliRunner().invoke(main, ["separate", *map(str, args), "--no-progress"])


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if TEMPORARY_NAME.match(p.name)) if folder.is_dir() else []


def wait_for_writing(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until the process is writing a song's stems into ``folder`` (its temporaries hold audio)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = temporaries(folder)
        try:
            if len(files) == 2 and all(p.stat().st_size > 10_000 for p in files):
                return
        except FileNotFoundError:
            pass
        if process.poll() is not None:
            pytest.fail(f"the separation ended before it could be interrupted: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("the separation did not start writing within the timeout")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- killed separations


def test_a_killed_separation_leaves_temporaries_that_the_next_run_removes_and_only_those(checkpoint, tmp_path):
    song, out = write_song(tmp_path / "long.wav", LONG), tmp_path / "out"
    process = start(song, "--model", checkpoint, "--out", out)
    wait_for_writing(out / "long", process)
    process.kill()
    process.wait(timeout=60)
    folder = out / "long"
    left = temporaries(folder)
    assert [p.name for p in folder.iterdir()] and all(TEMPORARY_NAME.match(p.name) for p in folder.iterdir())
    assert sorted(TEMPORARY_NAME.match(p.name)["name"] for p in left) == ["accompaniment.wav", "vocals.wav"]
    # what is not a stale temporary of ours stays: the user's look-alikes, and a live process's temporary
    (folder / ".vocals.wav.part").write_bytes(b"the user's")
    (folder / ".vocals.wav.waveunet-1-zzzzzzzz.partial").write_bytes(b"not our pattern")
    live = Temporary(folder / "drums.wav")  # this process is alive, and holds its lock

    result = run(song, "--model", checkpoint, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Note: removed 2 temporary file(s) that killed runs left behind (in {folder})" in result.output.splitlines()
    assert sorted(p.name for p in folder.iterdir()) == sorted([".vocals.wav.part", ".vocals.wav.waveunet-1-zzzzzzzz.partial",
                                                               live.path.name, "accompaniment.wav", "vocals.wav"])
    assert sf.info(str(folder / "vocals.wav")).frames == int(LONG * RATE)
    live.discard()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_a_separation_cleanly_in_one_line(checkpoint, tmp_path, sig):
    song, out = write_song(tmp_path / "long.wav", LONG), tmp_path / "deep" / "out"
    process = start(song, "--model", checkpoint, "--out", out)
    wait_for_writing(out / "long", process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, stderr  # 143, 130: what a shell reports for a process the signal ended
    assert stdout == ""
    assert stderr == (f"Interrupted by {signal.Signals(sig).name}: {song} was not written (no partial file is left); "
                      f"run the same command again to go on\n")
    assert not (tmp_path / "deep").exists()  # nothing it created is left, not even the folders


def test_a_folder_run_killed_mid_way_and_run_again_leaves_the_same_files_as_one_uninterrupted_run(checkpoint, tmp_path):
    library = tmp_path / "library"
    for index, (name, seconds) in enumerate([("a", 1.0), ("b", LONG), ("c", 1.0)]):
        write_song(library / f"{name}.wav", seconds, seed=index)
    whole = run(library, "--model", checkpoint, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output

    process = start(library, "--model", checkpoint, "--out", tmp_path / "out")
    wait_for_writing(tmp_path / "out" / "b", process)
    process.kill()
    process.wait(timeout=60)
    assert (tmp_path / "out" / "a" / "vocals.wav").is_file() and not (tmp_path / "out" / "c").exists()
    again = run(library, "--model", checkpoint, "--out", tmp_path / "out")
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[:2] == [
        f"Note: removed 2 temporary file(s) that killed runs left behind (in {tmp_path / 'out' / 'b'})",
        f"{library / 'a.wav'}: skipped, its outputs are all there (--force separates it again)"]
    assert again.output.splitlines()[-1].startswith("3 files: 2 separated, 1 skipped, 0 failed; ")
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")  # the same names, the same bytes, nothing else


# ----------------------------------------------------------------------------- two processes at once


def test_outputs_that_another_process_wrote_meanwhile_are_found_right_before_the_work(checkpoint, tmp_path):
    # 80 s: the first process stays on it for seconds, so that the second (1 s of audio) surely
    # finishes first even on a loaded machine (with 20 s it lost that race once, in 0.9 s)
    long_song, short = write_song(tmp_path / "long.wav", 4 * LONG), write_song(tmp_path / "short.wav", seed=1)
    out = tmp_path / "out"
    first = start(long_song, short, "--model", checkpoint, "--out", out)
    wait_for_writing(out / "long", first)
    second = run(short, "--model", checkpoint, "--out", out)  # finishes while the first is still on the long song
    assert second.exit_code == 0, second.output
    written = tree(out / "short")
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert f"{short}: skipped, its outputs appeared meanwhile (another process?)" in stdout.splitlines()
    assert stdout.splitlines()[-1].startswith("2 files: 1 separated, 1 skipped, 0 failed; ")
    assert "already exists" not in stdout + stderr and tree(out / "short") == written


# -------------------------------------------------------------------------------------- a full disk


def _namespace_prefix() -> list[str] | None:
    """How this test may mount a tmpfs of its own: ``unshare -m`` (as root), or in a user namespace."""
    if shutil.which("unshare") is None or sys.platform != "linux":
        return None
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d; rmdir $d"
    for prefix in (["unshare", "-m"], ["unshare", "-U", "-r", "-m"]):
        if subprocess.run([*prefix, "sh", "-c", probe], capture_output=True).returncode == 0:
            return prefix
    return None


FULL_DISK_SCRIPT = """
import hashlib, json, shutil, sys
from pathlib import Path
from click.testing import CliRunner
from waveunet.cli import main

disk, checkpoint, short, long = map(Path, sys.argv[1:5])
out = disk / "out"

def run(*args):
    result = CliRunner().invoke(main, ["separate", *map(str, args), "--model", str(checkpoint), "--out", str(out),
                                       "--no-progress"])
    return {"code": result.exit_code, "output": result.output}

def files():
    return {str(p.relative_to(disk)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(disk.rglob("*")) if p.is_file()}

report = {"free": shutil.disk_usage(disk).free}
report["ahead"] = run(long, "--format", "wav")   # WAV: its size is known, checked before any work
report["after_ahead"] = files()
report["small"] = run(short, "--format", "flac")  # fits
report["before"] = files()
report["full"] = run(long, "--format", "flac", "--force")  # FLAC: fills the disk while writing
report["after"] = files()
print(json.dumps(report))
"""


def check_full_disk(report: dict, out: Path, long_song: Path, disk_size: int) -> None:
    need = 2 * encoded_bytes("wav", 16, int(LONG * RATE), 2)
    free = format_bytes(report["free"])
    assert report["ahead"] == {"code": 1, "output": f"Error: {out / 'song'}: not enough free space on the device "
                                                    f"(the outputs of {long_song} need {format_bytes(need)}, {free} free)\n"}
    assert report["after_ahead"] == {}  # refused before any work: not even a folder
    assert report["small"]["code"] == 0, report["small"]
    assert len(report["before"]) == 2
    line = report["full"]["output"]
    assert report["full"]["code"] == 1 and line.count("\n") == 1, line
    prefix = f"Error: {out / 'song'}: no space left on the device (the outputs of {long_song} need about "
    assert line.startswith(prefix) and line.endswith(" free)\n"), line
    needed = line[len(prefix):].split(",")[0]
    value, unit = needed.split()
    assert unit == "MiB" and float(value) * 2**20 > disk_size  # what the outputs need, more than the disk holds
    assert report["after"] == report["before"]  # the existing outputs survive, and no temporary is left


def test_a_full_disk_says_so_on_a_real_tmpfs(checkpoint, tmp_path):
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (no unshare, or no mount namespaces); the patched test covers it")
    short, long_song = write_song(tmp_path / "short" / "song.wav"), write_song(tmp_path / "long" / "song.wav", LONG)
    disk, size = tmp_path / "disk", 2 * 2**20
    disk.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    mount = f"mount -t tmpfs -o size={size} tmpfs {disk} && exec {sys.executable} {script} {disk} {checkpoint} {short} {long_song}"
    done = subprocess.run([*prefix, "sh", "-c", mount], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_full_disk(json.loads(done.stdout.splitlines()[-1]), disk / "out", long_song, size)


class _FillingFile:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, file, room: list[int]):
        self._file, self._room = file, room

    def write(self, data) -> int:
        if len(data) > self._room[0]:
            written = self._file.write(data[: self._room[0]]) if self._room[0] else 0
            self._room[0] = 0
            if written:
                return written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room[0] -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


def test_a_full_disk_says_so_with_a_write_patched_to_fail(checkpoint, tmp_path, monkeypatch):
    short, long_song = write_song(tmp_path / "short" / "song.wav"), write_song(tmp_path / "long" / "song.wav", LONG)
    disk, size = tmp_path / "disk", 2 * 2**20
    disk.mkdir()
    room = [size]  # bytes left on the pretend disk, shared by every file written
    monkeypatch.setattr(waveunet.atomic, "free_space", lambda folder: room[0])
    original = _ReportingFile.__init__

    def filling(self, path):
        original(self, path)
        self._file = _FillingFile(self._file, room)

    monkeypatch.setattr(_ReportingFile, "__init__", filling)
    out = disk / "out"

    def separate(*args):
        result = CliRunner().invoke(main, ["separate", *map(str, args), "--model", str(checkpoint), "--out", str(out),
                                           "--no-progress"])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return {"code": result.exit_code, "output": result.output}

    def files():
        return {str(p.relative_to(disk)): p.read_bytes() for p in sorted(disk.rglob("*")) if p.is_file()}

    report = {"free": size, "ahead": separate(long_song, "--format", "wav"), "after_ahead": files(),
              "small": separate(short, "--format", "flac")}
    report["before"] = files()
    room[0] = size - sum(map(len, report["before"].values()))
    report["full"] = separate(long_song, "--format", "flac", "--force")
    report["after"] = files()
    check_full_disk(report, out, long_song, size)


# ---------------------------------------------------------------------------------------- messages


def test_a_failure_with_the_demo_model_prints_one_error_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["separate", "missing.wav"])  # the README's command, a file that is not there
    assert (result.exit_code, result.output) == (1, "Error: missing.wav: no such audio file\n")
    assert list(tmp_path.iterdir()) == []  # and no empty separated/demo folder


def test_a_failed_separation_leaves_no_folder_it_created(checkpoint, tmp_path):
    nan = 0.1 * np.ones((4000, 2), np.float32)
    nan[3000] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, RATE, subtype="FLOAT")
    result = run(tmp_path / "nan.wav", "--model", checkpoint, "--out", tmp_path / "a" / "b" / "c")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nan.wav'}: audio file contains NaN or infinite samples\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.wav"]


@pytest.mark.parametrize("content", [os.urandom(4096), b"PK\x03\x04" + os.urandom(500), b"hello\n" * 100])
def test_a_random_file_as_model_is_not_a_checkpoint(tmp_path, content):
    (tmp_path / "model.pt").write_bytes(content)
    result = run(write_song(tmp_path / "a.wav"), "--model", tmp_path / "model.pt")
    assert result.exit_code == 1
    damaged = " (a truncated or damaged PyTorch file)" if content.startswith(b"PK") else ""
    assert result.output == f"Error: {tmp_path / 'model.pt'}: not a waveunet or PyTorch checkpoint{damaged}\n"
