"""The file layer of ``waveunet separate``: output formats, folders and ``-r``, skipping finished
files, ``--filename`` templates and the clashes refused before any work, the summary line."""

import doctest
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import waveunet
import waveunet.audio.writing
import waveunet.progress
from waveunet.audio import write_audio
from waveunet.audio.writing import BlockWriter, check_capacity, compression_level, encoded_bytes, output_rate
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.separation import FileOptions, separate_file, separate_files
from waveunet.separation.files import SeparatedFile, _done_line
from waveunet.separation.naming import check_template

from test_separate import checkpoint, model  # noqa: F401 (fixtures: the same small M4, and its checkpoint file)


def write_song(path, seconds=0.5, rate=44100, channels=2, seed=0, level=0.3):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = level * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels)).astype(np.float32)
    sf.write(str(path), audio, rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return path


def run(*args):
    return CliRunner().invoke(main, ["separate", *map(str, args), "--no-progress"])


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_the_pure_functions_say_what_their_docstrings_say():
    for module in (waveunet.progress, waveunet.audio.writing):
        assert doctest.testmod(module).failed == 0


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("format,bits,rate,subtype", [
    ("wav", 16, 44100, "PCM_16"), ("wav", 24, 22050, "PCM_24"), ("wav", 32, 44100, "FLOAT"),
    ("flac", 16, 44100, "PCM_16"), ("flac", 24, 48000, "PCM_24"),
    ("mp3", 16, 44100, "MPEG_LAYER_III"), ("mp3", 16, 96000, "MPEG_LAYER_III"),
    ("ogg", 16, 44100, "VORBIS"), ("ogg", 16, 96000, "VORBIS"),
    ("opus", 16, 44100, "OPUS"), ("opus", 16, 16000, "OPUS"),
])
def test_each_format_is_written_and_reads_back_at_the_right_rate_length_and_channels(model, tmp_path, format, bits,
                                                                                     rate, subtype):
    song = write_song(tmp_path / "song.flac", seconds=0.6, rate=rate, channels=1)
    result = separate_file(song, model, tmp_path / "out", format=format, bits=bits, progress=False)
    expected_rate = {("mp3", 96000): 48000, ("opus", 44100): 48000}.get((format, rate), rate)
    expected_frames = -(-int(0.6 * rate) * expected_rate // rate)
    for stem, path in result.outputs.items():
        assert path == tmp_path / "out" / "song" / f"{stem}.{format}"
        info = sf.info(str(path))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (expected_rate, expected_frames, 2, subtype)
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        assert data.shape == (expected_frames, 2) and np.abs(data).max() > 0


def test_the_outputs_of_a_resampled_format_are_the_stems_resampled(model, tmp_path, monkeypatch):
    song = write_song(tmp_path / "song.wav", seconds=0.6, rate=44100, level=0.05)
    at_input_rate = separate_file(song, model, tmp_path / "a", bits=32, progress=False)
    # float WAV "at 48 kHz" takes the path opus takes, without a lossy codec in the way
    monkeypatch.setattr("waveunet.separation.files.output_rate", lambda format, rate: 48000)
    resampled = separate_file(song, model, tmp_path / "b", bits=32, progress=False)
    for stem, path in at_input_rate.outputs.items():
        stems = torch.from_numpy(sf.read(str(path), dtype="float32")[0].T.copy())
        expected = waveunet.audio.resample(stems, 44100, 48000)
        got = torch.from_numpy(sf.read(str(resampled.outputs[stem]), dtype="float32")[0].T.copy())
        assert got.shape == expected.shape == (2, 28800)
        assert (got - expected).abs().max() <= 1e-5


def test_the_cli_says_once_that_opus_is_resampled(checkpoint, tmp_path):
    songs = [write_song(tmp_path / f"{name}.wav", rate=44100, seed=i) for i, name in enumerate("ab")]
    result = run(*songs, "--model", checkpoint, "--out", tmp_path / "out", "--format", "opus")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("Note: opus")]
    assert notes == ["Note: opus takes only 8, 12, 16, 24, 48 kHz: the outputs are resampled (44100 Hz -> 48000 Hz)"]
    assert sf.info(str(tmp_path / "out" / "b" / "vocals.opus")).samplerate == 48000


def test_quality_is_the_compression_level_of_the_lossy_formats(tmp_path):
    t = torch.arange(3 * 44100) / 44100
    audio = torch.stack([0.3 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn_like(t)] * 2)
    for format in ("mp3", "ogg", "opus"):
        rate = output_rate(format, 44100)
        signal = waveunet.audio.resample(audio, 44100, rate)
        small = write_audio(tmp_path / f"small.{format}", signal, rate, format=format, quality=1)
        large = write_audio(tmp_path / f"large.{format}", signal, rate, format=format, quality=9)
        assert small.stat().st_size < 0.7 * large.stat().st_size, format
    assert compression_level("mp3", 10) == 0.0 and compression_level("ogg", 2.5) == 0.75
    write_audio(tmp_path / "lowest.mp3", audio, 44100, format="mp3", quality=0)  # libsndfile's level < 1 for LAME


@pytest.mark.parametrize("args,message", [
    (["--format", "wav", "--quality", "5"], "Error: --quality: wav is lossless; --quality applies to mp3, ogg and opus"),
    (["--format", "mp3", "--bits", "24"], "Error: --bits 24: mp3 is lossy; --bits applies to wav and flac (use --quality)"),
    (["--format", "flac", "--bits", "32"], "Error: --bits 32: flac is written with 16 or 24 bits; use --bits 24 or --format wav"),
])
def test_format_options_that_do_not_fit_are_one_line_before_any_work(checkpoint, tmp_path, args, message):
    result = run(write_song(tmp_path / "a.wav"), "--model", checkpoint, "--out", tmp_path / "out", *args)
    assert (result.exit_code, result.output) == (1, message + "\n")
    assert not (tmp_path / "out").exists()


def test_every_format_clips_beyond_one_the_same_way(tmp_path):
    loud = torch.tensor([[0.5, 1.5, -2.0, 0.999, -1.0, 3.0] * 800, [1.0, -1.2, 0.2, -0.3, 1.01, 0.0] * 800])
    beyond = int((loud.abs() > 1).sum())
    for format, bits in [("wav", 16), ("wav", 24), ("wav", 32), ("flac", 16), ("mp3", 16), ("ogg", 16), ("opus", 16)]:
        rate = output_rate(format, 44100)
        writer = BlockWriter(tmp_path / f"loud{bits}.{format}", rate, 2, format, bits)
        writer.write(loud)
        writer.close()
        clipped = write_audio(tmp_path / f"clipped{bits}.{format}", loud.clamp(-1, 1), rate, format=format, bits=bits)
        # writing the loud signal encodes exactly what writing it clipped to [-1, 1] does (Ogg streams
        # carry a random serial number: compare what they decode to)
        assert np.array_equal(sf.read(str(tmp_path / f"loud{bits}.{format}"))[0], sf.read(str(clipped))[0]), format
        assert writer.clipped == beyond
        if format in ("wav", "flac"):
            decoded, _ = sf.read(str(clipped), dtype="float32", always_2d=True)
            assert np.abs(decoded.T - loud.clamp(-1, 1).numpy()).max() <= 1 / 2**15


def test_the_cli_notes_clipped_samples(checkpoint, tmp_path):
    result = run(write_song(tmp_path / "loud.wav", level=3.0), "--model", checkpoint, "--out", tmp_path / "out")
    assert result.exit_code == 0
    note = next(line for line in result.output.splitlines() if line.startswith("Note:"))
    assert note.startswith(f"Note: {tmp_path / 'loud.wav'}: clipped samples beyond [-1, 1] to -1 or 1 (")


def test_a_format_that_cannot_hold_the_outputs_is_refused_before_any_work(tmp_path):
    three = waveunet.build_model("M4", levels=3, features=4, channels=3)
    path = waveunet.save_model(three, tmp_path / "three.pt")
    result = run(write_song(tmp_path / "a.wav"), "--model", path, "--out", tmp_path / "out", "--format", "mp3")
    assert (result.exit_code, result.output) == (1, "Error: --format mp3: mp3 holds at most 2 channel(s), the outputs have 3\n")
    assert not (tmp_path / "out").exists()
    with pytest.raises(WaveUNetError, match="flac holds at most 8 channel"):
        check_capacity("flac", 16, 9)
    with pytest.raises(WaveUNetError, match="ogg holds at most 255 channel"):
        check_capacity("ogg", 16, 256)  # libvorbis would crash the process
    hours = 7 * 3600 * 44100
    with pytest.raises(WaveUNetError, match=r"long.wav: each output would be 4.14 GiB, more than a wav file holds "
                                            r"\(4.00 GiB\); use --format flac"):
        check_capacity("wav", 16, 2, 44100, hours, name="long.wav")
    check_capacity("flac", 16, 2, 44100, hours)


@pytest.mark.parametrize("bits,channels,frames", [(16, 2, 1001), (24, 1, 1001), (24, 2, 7), (32, 2, 1000), (32, 1, 5)])
def test_the_size_of_a_wav_file_is_known_exactly(tmp_path, bits, channels, frames):
    path = write_audio(tmp_path / "x.wav", 0.1 * torch.randn(channels, frames), 8000, bits=bits)
    assert path.stat().st_size == encoded_bytes("wav", bits, frames, channels)


# ------------------------------------------------------------------------------------------ folders


def test_a_folder_is_its_audio_files_and_r_mirrors_its_subfolders(checkpoint, tmp_path):
    library = tmp_path / "library"
    for name in ["one.wav", "sub/two.flac", "sub/deeper/three.wav", ".hidden.wav", ".dot/four.wav"]:
        write_song(library / name, seconds=0.3)
    (library / "notes.txt").write_text("not audio")
    flat = run(library, "--model", checkpoint, "--out", tmp_path / "flat")
    assert flat.exit_code == 0 and tree(tmp_path / "flat") == ["one/accompaniment.wav", "one/vocals.wav"]
    deep = run(library, "-r", "--model", checkpoint, "--out", tmp_path / "deep")
    assert deep.exit_code == 0, deep.output
    assert tree(tmp_path / "deep") == [f"{track}/{stem}.wav" for track in ["one", "sub/deeper/three", "sub/two"]
                                       for stem in ("accompaniment", "vocals")]
    assert deep.output.splitlines()[-1].startswith("3 files: 3 separated, 0 skipped, 0 failed; ")


def test_the_output_folder_inside_the_input_folder_is_not_separated_again(checkpoint, tmp_path):
    write_song(tmp_path / "music" / "song.wav")
    for _ in range(2):
        result = run(tmp_path / "music", "-r", "--model", checkpoint, "--out", tmp_path / "music" / "separated")
        assert result.exit_code == 0, result.output
    assert tree(tmp_path / "music") == ["separated/song/accompaniment.wav", "separated/song/vocals.wav", "song.wav"]


def test_a_folder_without_audio_files_fails_on_its_own_line(checkpoint, tmp_path):
    write_song(tmp_path / "nested" / "inner" / "a.wav")
    result = run(tmp_path / "nested", write_song(tmp_path / "b.wav"), "--model", checkpoint, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (f"Error: {tmp_path / 'nested'}: no audio files in this folder "
                                             f"(wav, wave, flac, mp3, ogg, oga, opus, ...); its subfolders have some: add -r")
    assert tree(tmp_path / "out") == ["b/accompaniment.wav", "b/vocals.wav"]


def test_finished_files_are_skipped_and_force_redoes_them(checkpoint, tmp_path):
    songs = [write_song(tmp_path / "in" / f"{name}.wav", seed=i) for i, name in enumerate("abc")]
    first = run(*songs[:2], "--model", checkpoint, "--out", tmp_path / "out")
    assert first.exit_code == 0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")}
    (tmp_path / "out" / "b" / "vocals.wav").unlink()  # b lacks one stem: only that one is written
    second = run(*songs, "--model", checkpoint, "--out", tmp_path / "out")
    assert second.exit_code == 0, second.output
    lines = second.output.splitlines()
    assert lines[0] == f"{songs[0]}: skipped, its outputs are all there (--force separates it again)"
    assert lines[1].startswith(f"{songs[1]} -> {tmp_path / 'out' / 'b'}/ (vocals.wav; kept accompaniment.wav): ")
    assert lines[-1].startswith("3 files: 2 separated, 1 skipped, 0 failed; ")
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items() if p.name != "vocals.wav" or p.parent.name != "b")
    forced = run(*songs, "--model", checkpoint, "--out", tmp_path / "out", "--force")
    assert forced.output.splitlines()[-1].startswith("3 files: 3 separated, 0 skipped, 0 failed; ")
    assert all(p.stat().st_mtime_ns != stamp for p, stamp in stamps.items())


def test_a_file_of_another_length_in_the_way_is_an_error_not_a_skip(model, tmp_path):
    song = write_song(tmp_path / "a.wav")
    separate_file(song, model, tmp_path / "out", progress=False)
    write_audio(tmp_path / "out" / "a" / "vocals.wav", torch.zeros(2, 100), 44100, force=True)
    with pytest.raises(WaveUNetError, match=r"vocals.wav: already exists, and is not a complete vocals of .*a.wav "
                                            r"\(100 of 22050 samples\); use --force to replace it"):
        separate_file(song, model, tmp_path / "out", progress=False)


def test_the_exit_code_is_one_if_any_file_failed(checkpoint, tmp_path):
    good = write_song(tmp_path / "good.wav")
    result = run(good, tmp_path / "missing.wav", "--model", checkpoint, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        f"2 files: 1 separated, 0 skipped, 1 failed ({tmp_path / 'missing.wav'}: no such audio file); ")


# -------------------------------------------------------------------------------------------- names


def test_filename_templates_use_demucs_keys_and_the_model(checkpoint, tmp_path):
    song = write_song(tmp_path / "My Song.flac")
    result = run(song, "--model", checkpoint, "--out", tmp_path / "out", "--filename", "{model}/{track}-{trackext}_{stem}.{ext}",
                 "--format", "ogg")
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "out") == ["small/My Song-flac_accompaniment.ogg", "small/My Song-flac_vocals.ogg"]


def test_the_default_names_are_unchanged(checkpoint, tmp_path):
    assert run(write_song(tmp_path / "a.wav"), "--model", checkpoint, "--out", tmp_path / "out").exit_code == 0
    assert tree(tmp_path / "out") == ["a/accompaniment.wav", "a/vocals.wav"]


def clash(tmp_path, checkpoint, songs, *args):
    result = run(*songs, "--model", checkpoint, "--out", tmp_path / "out", *args)
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()  # refused before any work
    return result.output.strip()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_inputs_of_the_same_name_are_refused_before_any_work(checkpoint, tmp_path, monkeypatch, force):
    monkeypatch.chdir(tmp_path)
    songs = [write_song(Path(folder) / "song.wav", seed=i) for i, folder in enumerate("ab")]
    assert clash(tmp_path, checkpoint, songs, *force) == (
        f"Error: a/song.wav and b/song.wav would both be written to {tmp_path / 'out' / 'song' / 'accompaniment.wav'}: "
        f"separate them into different --out folders, or separate the folder that holds both (.) with -r, "
        f"which mirrors its subfolders under --out")
    mirrored = run(".", "-r", "--model", checkpoint, "--out", tmp_path / "out", *force)  # what the hint says works
    assert mirrored.exit_code == 0
    assert tree(tmp_path / "out") == [f"{d}/song/{s}.wav" for d in "ab" for s in ("accompaniment", "vocals")]


def test_a_clash_of_extensions_suggests_trackext(checkpoint, tmp_path):
    songs = [write_song(tmp_path / "song.wav"), write_song(tmp_path / "song.flac")]
    message = clash(tmp_path, checkpoint, songs)
    assert message.endswith('tell their extensions apart with --filename "{track}.{trackext}/{stem}.{ext}"')
    assert run(*songs, "--model", checkpoint, "--out", tmp_path / "out", "--filename",
               "{track}.{trackext}/{stem}.{ext}").exit_code == 0


def test_templates_that_make_outputs_collide_are_refused_before_any_work(checkpoint, tmp_path):
    songs = [write_song(tmp_path / "a.wav"), write_song(tmp_path / "b.wav")]
    out = tmp_path / "out"
    assert clash(tmp_path, checkpoint, songs, "--filename", "{track}.{ext}") == (
        f"Error: --filename '{{track}}.{{ext}}': {songs[0]}'s accompaniment and vocals would both be written to "
        f"{out / 'a.wav'}; put {{stem}} in it")
    assert clash(tmp_path, checkpoint, songs, "--filename", "{stem}.{ext}") == (
        f"Error: {songs[0]} and {songs[1]} would both be written to {out / 'accompaniment.wav'}: "
        f'put {{track}} in --filename (e.g. --filename "{{track}}/{{stem}}.{{ext}}")')


def test_an_output_that_is_an_input_is_refused(checkpoint, tmp_path):
    song = write_song(tmp_path / "out" / "vocals.wav")
    message = clash_free = run(song, "--model", checkpoint, "--out", tmp_path, "--filename", "out/{stem}.{ext}")
    assert message.exit_code == 1
    assert clash_free.output == (f"Error: {song}: is an input, and {song}'s vocals would be written over it; "
                                 f"choose another --out or --filename\n")


@pytest.mark.parametrize("template,problem", [("{track}/{name}.{ext}", "unknown key {name}"),
                                              ("{track:>10}/{stem}", "unknown key {track:>10}"),
                                              ("../{stem}.{ext}", "must be a relative file path"),
                                              ("/tmp/{stem}.{ext}", "must be a relative file path"),
                                              ("{track}/{stem", "expected '}'")])
def test_bad_templates_are_one_line(template, problem):
    with pytest.raises(WaveUNetError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        check_template(template)


def test_the_python_api_passes_engine_options_through(model, tmp_path):
    song = write_song(tmp_path / "a.wav")
    result = separate_files([song], model, tmp_path / "out", echo=lambda *_: None, window=3000, batch_size=2,
                            progress=False)
    assert [r.input for r in result.done] == [song]
    with pytest.raises(TypeError, match="unknown separation options: colour"):
        separate_files([song], model, tmp_path / "out", echo=lambda *_: None, colour="blue")
    options = FileOptions.of({"format": "flac", "window": 3000})
    assert (options.format, options.engine) == ("flac", {"window": 3000})


# ----------------------------------------------------------------------------------- what is printed


def test_speed_and_durations_read_true():
    line = _done_line(SeparatedFile(Path("a.wav"), {"vocals": Path("out/a/vocals.wav")}, 0.05, 0.1, ("vocals",)))
    assert line == "a.wav -> out/a/ (vocals.wav): 0.05 s of audio in 0.1 s (2.0x slower than real time)"
    line = _done_line(SeparatedFile(Path("a.wav"), {"vocals": Path("out/a/vocals.wav")}, 600, 60, ("vocals",)))
    assert line.endswith("600.0 s of audio in 60.0 s (10.0x faster than real time)")
