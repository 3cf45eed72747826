"""Separation: exactness, rates and channels, the file layout, no overwrite, bad inputs, the CLI."""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import waveunet
from waveunet import separation
from waveunet.audio import resample
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.separation import separate, separate_file

RATE = 22050


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return waveunet.build_model("M4", levels=6, features=8).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    return waveunet.save_model(model, tmp_path_factory.mktemp("ckpt") / "small.pt")


@pytest.fixture
def short_blocks(monkeypatch):
    """Blocks of a fraction of a second, so that a short song streams through many of them."""
    # where it is read: the engine's module (and the file layer's, which reads files in such blocks)
    monkeypatch.setattr(separation.apply, "BLOCK_SECONDS", 0.3)
    monkeypatch.setattr(separation.files, "BLOCK_SECONDS", 0.3)


def whole_song(model, song):
    """One forward pass over the whole song, zero-padded by the context: ``[sources, channels, time]``."""
    sizes = model.sizes(song.shape[-1])
    padded = F.pad(song, (sizes.context, sizes.input_length - song.shape[-1] - sizes.context))
    with torch.inference_mode():
        return model(padded[None])[0][..., : song.shape[-1]]


def write_song(path, seconds=1.5, rate=44100, channels=2, seed=0):
    audio = 0.3 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels)).astype(np.float32)
    sf.write(str(path), audio, rate, subtype="FLOAT" if str(path).endswith(".wav") else "PCM_24")
    return path


# --------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("window,batch_size", [(None, 1), (3000, 3)])
def test_separation_equals_one_whole_song_forward(model, short_blocks, window, batch_size):
    song = 0.3 * torch.randn(2, 3 * RATE + 11)
    # difference="model": the model's own accompaniment (the random model's estimates go beyond the clipping)
    estimates = separate(model, song, RATE, window=window, batch_size=batch_size, difference="model")
    assert list(estimates) == ["accompaniment", "vocals"]
    stacked = torch.stack(list(estimates.values()))
    assert stacked.shape == (2, 2, song.shape[-1])
    assert (stacked - whole_song(model, song)).abs().max() <= 1e-5


def test_m4_itself_is_exact_on_a_short_signal():
    torch.manual_seed(1)
    m4 = waveunet.build_model("M4").eval()
    song = 0.3 * torch.randn(2, 9000)
    got = torch.stack(list(separate(m4, song, RATE, window=4096, difference="model").values()))
    assert (got - whole_song(m4, song)).abs().max() <= 1e-5


def test_window_dependent_models_run_the_reference_windows_batched():
    torch.manual_seed(0)
    net = waveunet.build_model("pytorch-default", levels=3, features=8, output_length=3000).eval()
    sizes = net.training_sizes
    song = 0.3 * torch.randn(2, 10000)
    # the reference: zero-pad the context, windows of the training input one output length apart
    windows = math.ceil(song.shape[-1] / sizes.output_length)
    padded = F.pad(song, (sizes.context, windows * sizes.output_length - song.shape[-1] + sizes.context + 1))
    with torch.inference_mode():
        expected = torch.cat([net(padded[None, :, i * sizes.output_length: i * sizes.output_length + sizes.input_length])[0]
                              for i in range(windows)], -1)[..., : song.shape[-1]]
    got = torch.stack(list(separate(net, song, 44100, batch_size=3).values()))
    assert (got - expected).abs().max() <= 1e-5


def test_same_padding_models_are_blended_and_cover_the_song():
    net = waveunet.build_model("M1", levels=4, features=8, output_length=2048).eval()
    out = separate(net, 0.3 * torch.randn(1, 10000), RATE)
    assert all(v.shape == (1, 10000) and torch.isfinite(v).all() for v in out.values())


def test_the_model_keeps_its_training_mode(model):
    model.train()
    separate(model, torch.zeros(2, 1000), RATE)
    assert model.training
    model.eval()


# ------------------------------------------------------------------------------ rates and channels


def test_other_sample_rates_are_resampled_there_and_back(model, short_blocks):
    song = 0.3 * torch.randn(2, 44100 + 7)
    estimates = torch.stack(list(separate(model, song, 44100, difference="model").values()))
    expected = resample(whole_song(model, resample(song, 44100, RATE)), RATE, 44100)[..., : song.shape[-1]]
    expected = expected.clamp(-1, 1)  # estimates are clipped again after resampling, which can ring past 1
    assert estimates.shape == (2, 2, song.shape[-1])
    assert (estimates - expected).abs().max() <= 1e-5


def test_mono_into_a_stereo_model_is_duplicated(model):
    mono = 0.3 * torch.randn(1, 5000)
    got = separate(model, mono, RATE)
    expected = separate(model, mono.expand(2, -1), RATE)
    assert got["vocals"].shape == (2, 5000)
    torch.testing.assert_close(got["vocals"], expected["vocals"])
    torch.testing.assert_close(separate(model, mono[0], RATE)["vocals"], expected["vocals"])


def test_stereo_into_a_mono_model_is_averaged_and_stays_mono():
    net = waveunet.build_model("M3", levels=5, features=8).eval()
    stereo = 0.3 * torch.randn(2, 5000)
    got = separate(net, stereo, RATE)
    assert got["vocals"].shape == (1, 5000)
    torch.testing.assert_close(got["vocals"], separate(net, stereo.mean(0, keepdim=True), RATE)["vocals"])


def test_more_than_two_channels_need_a_downmix(model):
    surround = 0.3 * torch.randn(6, 3000)
    with pytest.raises(WaveUNetError, match="6 channels"):
        separate(model, surround, RATE)
    got = separate(model, surround, RATE, downmix=True)
    torch.testing.assert_close(got["vocals"], separate(model, surround.mean(0, keepdim=True), RATE)["vocals"])


@pytest.mark.parametrize("audio,problem", [(torch.zeros(2, 0), "non-empty"), (torch.full((2, 100), math.nan), "NaN")])
def test_bad_audio_in_memory_is_refused(model, audio, problem):
    with pytest.raises(WaveUNetError, match=problem):
        separate(model, audio, RATE)


# ---------------------------------------------------------------------------------------- files


def test_files_are_written_per_track_and_source_at_the_input_rate_and_length(model, tmp_path, short_blocks):
    song = write_song(tmp_path / "my song.wav", seconds=1.3, rate=44100)
    result = separate_file(song, model, tmp_path / "out", format="wav", bits=32, progress=False)
    assert result.outputs == {s: tmp_path / "out" / "my song" / f"{s}.wav" for s in ("accompaniment", "vocals")}
    mixture, rate = sf.read(str(song), dtype="float32", always_2d=True)
    in_memory = separate(model, torch.from_numpy(mixture.T.copy()), rate)
    for source, path in result.outputs.items():
        data, written_rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert written_rate == 44100 and data.shape == mixture.shape
        # the files hold the estimates clipped to [-1, 1] (this random model's vocals go beyond)
        assert np.abs(data.T - in_memory[source].clamp(-1, 1).numpy()).max() <= 1e-6
        assert result.clipped.get(source, 0) == int((in_memory[source].abs() > 1).sum())
    assert result.clipped["vocals"] > 0
    assert result.real_time_factor > 0
    assert sorted(p.name for p in (tmp_path / "out" / "my song").iterdir()) == ["accompaniment.wav", "vocals.wav"]


@pytest.mark.parametrize("format,bits,subtype", [("wav", 16, "PCM_16"), ("wav", 24, "PCM_24"), ("flac", 16, "PCM_16"),
                                                 ("flac", 24, "PCM_24")])
def test_formats_and_bits(model, tmp_path, format, bits, subtype):
    song = write_song(tmp_path / "a.wav", seconds=0.5, rate=RATE, channels=1)
    result = separate_file(song, model, tmp_path, format=format, bits=bits, sources=["vocals"], progress=False)
    assert list(result.outputs) == ["vocals"]
    info = sf.info(str(tmp_path / "a" / f"vocals.{format}"))
    assert (info.subtype, info.channels, info.frames) == (subtype, 2, int(0.5 * RATE))
    assert not (tmp_path / "a" / f"accompaniment.{format}").exists()


def test_existing_outputs_are_kept_without_force(model, tmp_path):
    song = write_song(tmp_path / "a.wav", seconds=0.5)
    separate_file(song, model, tmp_path / "out", progress=False)
    vocals = tmp_path / "out" / "a" / "vocals.wav"
    vocals.write_bytes(b"mine")
    with pytest.raises(WaveUNetError, match="already exists"):
        separate_file(song, model, tmp_path / "out", progress=False)
    assert vocals.read_bytes() == b"mine"
    separate_file(song, model, tmp_path / "out", force=True, progress=False)
    assert sf.info(str(vocals)).frames == int(0.5 * 44100)


def test_a_failure_mid_song_leaves_no_files(model, tmp_path, short_blocks):
    audio = 0.3 * np.random.default_rng(0).standard_normal((44100, 2)).astype(np.float32)
    audio[30000] = np.nan  # in a later block: the first blocks are already separated and written
    sf.write(str(tmp_path / "late.wav"), audio, 44100, subtype="FLOAT")
    with pytest.raises(WaveUNetError, match="NaN"):
        separate_file(tmp_path / "late.wav", model, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nor the folders it created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.wav"]


def test_unknown_sources_are_refused(model, tmp_path):
    with pytest.raises(WaveUNetError, match="drums"):
        separate_file(write_song(tmp_path / "a.wav"), model, tmp_path, sources=["drums"], progress=False)


def test_an_image_model_is_refused(tmp_path):
    net = waveunet.build_model("unet2d-ronneberger", levels=1, features=2)
    with pytest.raises(WaveUNetError, match="not a Wave-U-Net"):
        separate(net, torch.zeros(1, 100), RATE)


# ------------------------------------------------------------------------------------------ CLI


def bad_inputs(folder: Path) -> dict[str, Path]:
    """One file per problem the CLI must report on one line."""
    sf.write(str(folder / "empty.wav"), np.zeros((0, 2), np.float32), 44100)
    (folder / "notes.wav").write_text("these are not samples\n")
    write_song(folder / "full.wav", seconds=0.5)
    data = (folder / "full.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    nan = 0.1 * np.ones((4000, 2), np.float32)
    nan[100, 1] = np.inf
    sf.write(str(folder / "nan.wav"), nan, 44100, subtype="FLOAT")
    return {"missing": folder / "missing.wav", "empty": folder / "empty.wav", "not audio": folder / "notes.wav",
            "truncated": folder / "truncated.wav", "NaN": folder / "nan.wav"}


def test_cli_reports_each_bad_input_on_one_line_and_separates_the_others(checkpoint, tmp_path):
    good = write_song(tmp_path / "good.wav", seconds=0.5)
    bad = bad_inputs(tmp_path)
    result = CliRunner().invoke(main, ["separate", str(good), *map(str, bad.values()), "--model", str(checkpoint),
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == len(bad)  # one per bad input
    for path, line in zip(bad.values(), errors):
        assert str(path) in line
    for problem, line in zip(["no such", "empty", "not a readable", "truncated", "NaN"], errors):
        assert problem in line
    summary = result.output.splitlines()[-1]
    assert summary.startswith("6 files: 1 separated, 0 skipped, 5 failed (")
    assert all(line[len("Error: "):] in summary for line in errors)  # the failed files' reasons
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good"]
    assert sorted(p.name for p in (tmp_path / "out" / "good").iterdir()) == ["accompaniment.wav", "vocals.wav"]
    assert "real-time factor" in summary


def test_cli_refuses_a_checkpoint_that_is_not_ours(tmp_path):
    torch.save({"model_state_dict": {}}, tmp_path / "theirs.pt")
    result = CliRunner().invoke(main, ["separate", str(write_song(tmp_path / "a.wav")), "--model", str(tmp_path / "theirs.pt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "theirs.pt: not a waveunet checkpoint" in result.output
    assert "import-checkpoint" in result.output


def test_cli_reports_an_unwritable_output_folder(checkpoint, tmp_path):
    (tmp_path / "file").write_text("a file where the output folder should be")
    result = CliRunner().invoke(main, ["separate", str(write_song(tmp_path / "a.wav")), "--model", str(checkpoint),
                                       "--out", str(tmp_path / "file" / "out"), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: " in result.output and "cannot create output folder" in result.output


def test_cli_default_output_folder_sources_and_no_overwrite(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    song = write_song(tmp_path / "song.flac", seconds=0.5)
    args = ["separate", str(song), "--model", str(checkpoint), "--sources", "vocals", "--format", "flac", "--bits", "24"]
    assert CliRunner().invoke(main, args).exit_code == 0
    vocals = tmp_path / "separated" / "small" / "song" / "vocals.flac"
    assert [p.name for p in vocals.parent.iterdir()] == ["vocals.flac"]
    again = CliRunner().invoke(main, args)  # complete outputs: skipped, nothing replaced
    assert again.exit_code == 0 and again.output == f"{song}: skipped, its outputs are all there (--force separates it again)\n"
    vocals.write_bytes(b"not a complete output")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and vocals.read_bytes() == b"not a complete output"
    assert refused.output == (f"Error: {Path('separated/small/song/vocals.flac')}: already exists, and is not a complete "
                              f"vocals of {song} (not a readable audio file); use --force to replace it\n")
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    assert sf.info(str(vocals)).frames == int(0.5 * 44100)
    assert "drums" in CliRunner().invoke(main, [*args[:4], "--sources", "drums"]).output
    assert "flac is written with 16 or 24 bits" in CliRunner().invoke(main, [*args, "--bits", "32"]).output


def test_cli_says_once_that_the_bundled_demo_is_a_demonstration(model, tmp_path, monkeypatch):
    bundled = tmp_path / "pretrained"
    bundled.mkdir()
    waveunet.save_model(model, bundled / "demo.pt")
    monkeypatch.setattr("waveunet.resolve.BUNDLED_DIR", bundled)
    monkeypatch.chdir(tmp_path)
    songs = [str(write_song(tmp_path / f"{name}.wav", seconds=0.3)) for name in ("a", "b")]
    result = CliRunner().invoke(main, ["separate", *songs, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.count("demonstration model") == 1
    assert "waveunet train recipes/M4.toml" in result.output and "waveunet import-checkpoint" in result.output
    assert (tmp_path / "separated" / "demo" / "b" / "vocals.wav").is_file()


@pytest.mark.skipif(shutil.which("waveunet") is None, reason="the waveunet console script is not installed")
def test_console_script(checkpoint, tmp_path):
    song = write_song(tmp_path / "a.wav", seconds=0.3)
    done = subprocess.run(["waveunet", "separate", str(song), str(tmp_path / "missing.wav"), "--model", str(checkpoint),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Error: " + str(tmp_path / "missing.wav") in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "out" / "a" / "vocals.wav").is_file()


def test_cli_refuses_surround_files_unless_downmixed(checkpoint, tmp_path):
    sf.write(str(tmp_path / "surround.wav"), 0.1 * np.ones((2000, 6), np.float32), 44100)
    args = ["separate", str(tmp_path / "surround.wav"), "--model", str(checkpoint), "--out", str(tmp_path / "out"),
            "--no-progress"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "6 channels" in refused.output and "--downmix" in refused.output
    assert CliRunner().invoke(main, [*args, "--downmix"]).exit_code == 0
    assert sf.info(str(tmp_path / "out" / "surround" / "vocals.wav")).channels == 2


@pytest.mark.parametrize("orig,new", [(44100, 22050), (48000, 22050), (22050, 44100), (8000, 44100), (22050, 22050)])
def test_block_wise_resampling_equals_resampling_the_whole_signal(orig, new):
    from waveunet.audio import StreamResampler

    signal = torch.randn(2, 30011)
    resampler, pieces, start = StreamResampler(orig, new), [], 0
    for size in [1, 700, 5, 9000, 13, 20000, 1000]:
        pieces.append(resampler.push(signal[:, start : start + size]))
        start += size
    pieces.append(resampler.flush())
    torch.testing.assert_close(torch.cat(pieces, -1), resample(signal, orig, new), atol=1e-6, rtol=0)
