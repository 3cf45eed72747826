"""The separation engine's options: two stems, stems that sum to the song, shifts; and their CLI."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import waveunet
from waveunet.audio import read_audio, resample
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.separation import inference_tiling, separate, separate_file, stem_names
from waveunet.separation import apply as separation_apply
from waveunet.separation.apply import shift_offsets, stem_plan
from waveunet.tiling import tiled_forward

from test_separate import short_blocks, whole_song  # noqa: F401 (a fixture)

RATE = 22050
EXAMPLE = waveunet.__file__.rsplit("/", 1)[0] + "/examples/80s-rock.flac"


@pytest.fixture(scope="module")
def m4():
    torch.manual_seed(0)
    return waveunet.build_model("M4", levels=6, features=8).eval()


@pytest.fixture(scope="module")
def m6():
    torch.manual_seed(1)
    return waveunet.build_model("M6", levels=5, features=6).eval()


@pytest.fixture(scope="module")
def direct():
    """A direct-output model (one net per source, as the PyTorch Wave-U-Net) with four sources."""
    torch.manual_seed(2)
    return waveunet.build_model("M4", levels=5, features=6, output="direct", output_activation="tanh",
                                sources=("bass", "drums", "other", "vocals")).eval()


@pytest.fixture(scope="module")
def song():
    """3 s of the bundled real song at 44.1 kHz, stereo."""
    audio, rate = read_audio(EXAMPLE)
    assert rate == 44100
    return audio[:, 44100 : 4 * 44100]


def test_short_blocks_really_stream(short_blocks, monkeypatch):
    calls = []
    original = separation_apply.tiled_forward
    monkeypatch.setattr(separation_apply, "tiled_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    separate(waveunet.build_model("M4", levels=3, features=4), torch.zeros(2, 3 * RATE), RATE, window=2048)
    assert len(calls) >= 8  # regions of about 0.3 s (at least one window each)


def stacked(estimates):
    return torch.stack(list(estimates.values()))


# ------------------------------------------------------------------------------------------ stems


def test_stem_names():
    m4, m6 = waveunet.build_model("M4").config, waveunet.build_model("M6").config
    assert stem_names(m4) == stem_names(m4, difference="model") == ("accompaniment", "vocals")
    assert stem_names(m4, two_stems="vocals") == ("vocals", "no_vocals")
    assert stem_names(m6, two_stems="drums") == ("drums", "no_drums")
    # which model outputs come back to the input's rate, and which stem is made there from the input
    assert stem_plan(m6) == stem_plan(m6, two_stems=None)
    assert stem_plan(m6).resampled == (0, 1, 2) and stem_plan(m6).residual
    assert stem_plan(m6, difference="model").resampled == (0, 1, 2, 3) and not stem_plan(m6, difference="model").residual
    assert stem_plan(m6, two_stems="drums").resampled == (1,)
    assert stem_plan(m6, two_stems="vocals").resampled == (0, 1, 2)  # the difference source: the others make it
    with pytest.raises(WaveUNetError, match=r"two stems 'piano': not one of the model's sources \(bass, drums, other, vocals\)"):
        stem_names(m6, two_stems="piano")
    with pytest.raises(WaveUNetError, match="difference 'both': choose input or model"):
        stem_names(m4, difference="both")


@pytest.mark.parametrize("name", ["m4", "m6", "direct"])
def test_two_stems_sum_to_the_input_for_every_source(name, song, short_blocks, request):
    model = request.getfixturevalue(name)
    full = separate(model, song, 44100, window=2048)
    for source in model.config.sources:
        two = separate(model, song, 44100, two_stems=source, window=2048)
        assert list(two) == [source, f"no_{source}"]
        assert (two[source] + two[f"no_{source}"] - song).abs().max() <= 1e-6
        # the same estimate as in the full set, clipped as every estimate is (a formed one, in the full set, is not)
        torch.testing.assert_close(two[source], full[source].clamp(-1, 1), atol=1e-6, rtol=0)


def test_two_stems_of_a_mono_song_sum_to_it_as_the_model_takes_it(m4, song):
    mono = song[:1]
    two = separate(m4, mono, 44100, two_stems="accompaniment")
    assert two["accompaniment"].shape == (2, mono.shape[-1])  # the model's channels: mono duplicated
    assert (two["accompaniment"] + two["no_accompaniment"] - mono.expand(2, -1)).abs().max() <= 1e-6


@pytest.mark.parametrize("name", ["m4", "m6"])
def test_difference_models_stems_sum_to_the_input(name, song, short_blocks, request):
    model = request.getfixturevalue(name)
    summed = separate(model, song, 44100, window=2048)
    own = separate(model, song, 44100, difference="model", window=2048)
    assert (stacked(summed).sum(0) - song).abs().max() <= 1e-5
    for source in model.config.sources[:-1]:  # the estimated sources are the same, bit for bit
        assert torch.equal(summed[source], own[source])
    difference = model.config.sources[-1]
    assert (summed[difference] - own[difference]).abs().max() > 1e-3


def test_the_models_own_difference_misses_what_lies_above_its_nyquist_frequency(song):
    """The README's statement: below the input's rate, the model's stems sum to the mix only band-limited."""
    demo = waveunet.load_model("demo")  # 22.05 kHz: it sees nothing above 11.025 kHz
    own = separate(demo, song, 44100, difference="model")
    missing = song - stacked(own).sum(0)
    assert 0.01 < missing.pow(2).mean().sqrt() / song.pow(2).mean().sqrt() < 0.05  # 2.3% of the mix's RMS
    spectrum = torch.fft.rfft(missing, dim=-1).abs().pow(2).sum(0)
    frequency = torch.fft.rfftfreq(missing.shape[-1], 1 / 44100)
    # all of it in the resampling filters' transition band and above (they roll off from 0.99 x 11.025 kHz)
    assert spectrum[frequency > 9000].sum() / spectrum.sum() > 0.99
    summed = separate(demo, song, 44100)
    assert (stacked(summed).sum(0) - song).abs().max() <= 1e-5


def test_direct_models_are_not_changed_by_the_difference_mode(direct, song):
    assert all(torch.equal(a, b) for a, b in zip(separate(direct, song, 44100).values(),
                                                  separate(direct, song, 44100, difference="model").values()))


def read_stems(folder, names):
    return torch.stack([torch.from_numpy(sf.read(str(folder / f"{n}.wav"), dtype="float32", always_2d=True)[0].T.copy())
                        for n in names])


@pytest.mark.parametrize("bits,precision", [(32, 1e-6), (16, 2.5 / 32768)])
def test_stem_files_sum_to_the_input_within_the_formats_precision(song, tmp_path, bits, precision):
    path = tmp_path / "song.wav"
    sf.write(str(path), song.T.numpy(), 44100, subtype="FLOAT")
    demo = waveunet.load_model("demo")
    for options, names in [({}, ("accompaniment", "vocals")), ({"two_stems": "vocals"}, ("vocals", "no_vocals"))]:
        out = tmp_path / f"out-{bits}-{len(options)}"
        result = separate_file(path, demo, out, bits=bits, progress=False, **options)
        assert list(result.outputs) == list(names)
        assert sorted(p.name for p in (out / "song").iterdir()) == sorted(f"{n}.wav" for n in names)
        stems = read_stems(out / "song", names)
        assert stems.shape == (2, 2, song.shape[-1])
        assert (stems.sum(0) - song).abs().max() <= precision


# ----------------------------------------------------------------------------------------- shifts


def test_shift_offsets():
    assert shift_offsets(4096, 1) == (0,)
    assert shift_offsets(64, 4) == (0, 16, 32, 48)
    assert shift_offsets(64, 64) == tuple(range(64))
    for bad in (0, 65):
        with pytest.raises(WaveUNetError, match=f"shifts {bad}: choose 1 to 64"):
            shift_offsets(64, bad)


@pytest.mark.parametrize("preset,options", [("M4", dict(levels=6, features=8)),
                                            ("M1", dict(levels=4, features=8, output_length=2048)),
                                            ("pytorch-default", dict(levels=3, features=8, output_length=3000))])
def test_one_shift_is_the_plain_separation_bit_for_bit(preset, options, short_blocks):
    """shifts=1 streams the very windows of one tiled pass over the whole song, with no arithmetic added."""
    torch.manual_seed(0)
    model = waveunet.build_model(preset, **options).eval()
    rate = model.config.sample_rate
    mix = 0.3 * torch.randn(model.config.channels, rate + rate // 2 + 11)
    window = 2048  # (for M4; the others keep their training windows) so that regions are short and many
    plain = tiled_forward(model, mix, inference_tiling(model, window, mix.shape[-1]), batch_size=1)
    for kwargs in ({}, {"shifts": 1}):
        got = stacked(separate(model, mix, rate, difference="model", batch_size=1, window=window, **kwargs))
        assert torch.equal(got, plain)


@pytest.mark.parametrize("shifts", [3, 5])  # (2 and 4 shift the grid by multiples of 16, which changes less)
def test_shifts_average_separations_on_shifted_grids(m4, short_blocks, shifts):
    song = 0.3 * torch.randn(2, RATE + RATE // 2 + 11)
    offsets = shift_offsets(m4.length_step, shifts)
    # the song delayed by each offset (so the grid falls elsewhere on it), separated, advanced again; averaged
    expected = torch.stack([whole_song(m4, F.pad(song, (s, 0)))[..., s:] for s in offsets]).mean(0)
    got = stacked(separate(m4, song, RATE, shifts=shifts, difference="model", window=2048))
    assert (got - expected).abs().max() <= 1e-5
    assert (got - whole_song(m4, song)).abs().max() > 1e-3  # the offsets matter, so the test means something


def test_shifts_at_another_rate_and_with_two_stems(m4, song, short_blocks):
    offsets = shift_offsets(m4.length_step, 3)
    at_model_rate = resample(song, 44100, RATE)
    averaged = torch.stack([whole_song(m4, F.pad(at_model_rate, (s, 0)))[..., s:] for s in offsets]).mean(0)
    expected = resample(averaged, RATE, 44100)[..., : song.shape[-1]]
    got = separate(m4, song, 44100, shifts=3, two_stems="accompaniment", window=2048)
    assert (got["accompaniment"] - expected[0]).abs().max() <= 1e-5
    assert (got["accompaniment"] + got["no_accompaniment"] - song).abs().max() <= 1e-6


def test_shifts_cost_n_times_the_windows(m4):
    windows = []
    hook = m4.register_forward_hook(lambda module, inputs, output: windows.append(inputs[0].shape[0]))
    try:
        song = 0.3 * torch.randn(2, 5 * RATE)
        separate(m4, song, RATE, window=4096)
        one = sum(windows)
        windows.clear()
        separate(m4, song, RATE, window=4096, shifts=4)
    finally:
        hook.remove()
    assert sum(windows) == 4 * one


def test_shifts_make_a_small_difference_on_real_music(song):
    demo = waveunet.load_model("demo")
    one, four = stacked(separate(demo, song, 44100)), stacked(separate(demo, song, 44100, shifts=4))
    assert 0 < (one - four).abs().max() < 0.05


# -------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, m4):
    return waveunet.save_model(m4, tmp_path_factory.mktemp("ckpt") / "small.pt")


@pytest.fixture
def song_file(tmp_path, song):
    path = tmp_path / "song.wav"
    sf.write(str(path), song[:, :22050].T.numpy(), 44100, subtype="FLOAT")
    return path


def run(*args):
    return CliRunner().invoke(main, ["separate", *map(str, args), "--no-progress"])


def test_cli_two_stems_shifts_and_difference(checkpoint, song_file, tmp_path):
    out = tmp_path / "out"
    result = run(song_file, "--model", checkpoint, "--out", out, "--two-stems", "vocals", "--shifts", "2", "--bits", "32")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "song").iterdir()) == ["no_vocals.wav", "vocals.wav"]
    stems = read_stems(out / "song", ["vocals", "no_vocals"])
    mixture = torch.from_numpy(sf.read(str(song_file), dtype="float32")[0].T.copy())
    assert (stems.sum(0) - mixture).abs().max() <= 1e-6
    expected = separate(waveunet.load_model(checkpoint), mixture, 44100, shifts=2)["vocals"].clamp(-1, 1)
    assert (stems[0] - expected).abs().max() <= 1e-6

    result = run(song_file, "--model", checkpoint, "--out", tmp_path / "one", "--two-stems", "vocals",
                 "--sources", "no_vocals", "--difference", "model")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "one" / "song").iterdir()] == ["no_vocals.wav"]


@pytest.mark.parametrize("args,message", [
    (["--two-stems", "drums"], "Error: two stems 'drums': not one of the model's sources (accompaniment, vocals)"),
    (["--shifts", "65"], "Error: shifts 65: choose 1 to 64"),
    (["--shifts", "0"], "Invalid value for '--shifts'"),
    (["--difference", "both"], "Invalid value for '--difference'"),
    (["--two-stems", "vocals", "--sources", "accompaniment"], "Error: --sources accompaniment: accompaniment not among the model's stems (vocals, no_vocals)"),
    (["--device", "mps"], "'mps'"),
])
def test_cli_refuses_bad_engine_options_before_any_work(checkpoint, song_file, tmp_path, args, message):
    result = run(song_file, "--model", checkpoint, "--out", tmp_path / "out", *args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_cli_difference_option_is_the_engines():
    from waveunet.commands.separate import separate as command
    from waveunet.separation.apply import DEFAULT_DIFFERENCE, DIFFERENCE_MODES

    option = next(o for o in command.params if o.name == "difference")
    assert tuple(option.type.choices) == DIFFERENCE_MODES and option.default == DEFAULT_DIFFERENCE


def test_cli_help_lists_the_engine_options():
    text = CliRunner().invoke(main, ["separate", "--help"]).output
    for option in ("--two-stems SOURCE", "--shifts N", "--difference [input|model]", "--device [cpu|cuda|mps|auto]",
                   "ONNX file"):
        assert option in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_engine_on_a_gpu_equals_the_cpu(m4, song):
    cpu = separate(m4, song, 44100, shifts=2, two_stems="vocals", device="cpu")
    gpu = separate(m4, song, 44100, shifts=2, two_stems="vocals", device="cuda")
    m4.cpu()
    for stem in cpu:
        assert (cpu[stem] - gpu[stem].cpu()).abs().max() <= 1e-4


def test_the_engines_docstring_examples_run():
    import doctest

    from waveunet.separation import apply

    result = doctest.testmod(apply, raise_on_error=False, verbose=False)
    assert result.attempted >= 1 and result.failed == 0
