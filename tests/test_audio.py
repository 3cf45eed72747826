"""Audio I/O: round trips per format, the one-line errors, resampling, channels, atomic writes."""

import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from waveunet.audio import audio_info, match_channels, read_audio, resample, write_audio
from waveunet.errors import WaveUNetError

SR = 22050


def tone(seconds=0.5, channels=2, frequency=440.0, sr=SR):
    t = torch.arange(int(seconds * sr)) / sr
    return torch.stack([0.5 * torch.sin(2 * math.pi * frequency * (c + 1) * t) for c in range(channels)])


@pytest.mark.parametrize("format, bits, tolerance", [("wav", 16, 1e-4), ("wav", 24, 1e-6), ("wav", 32, 0), ("flac", 16, 1e-4)])
def test_lossless_round_trip(tmp_path, format, bits, tolerance):
    audio = tone()
    path = write_audio(tmp_path / f"x.{format}", audio, SR, format=format, bits=bits)
    decoded, sr = read_audio(path)
    assert sr == SR and decoded.dtype == torch.float32 and decoded.shape == audio.shape
    assert (decoded - audio).abs().max() <= tolerance
    assert audio_info(path).frames == audio.shape[1] and audio_info(path).channels == 2


@pytest.mark.parametrize("format", ["mp3", "ogg"])
def test_lossy_round_trip_keeps_the_signal(tmp_path, format):
    audio = tone(seconds=1.0)
    decoded, sr = read_audio(write_audio(tmp_path / f"x.{format}", audio, SR, format=format))
    assert sr == SR and decoded.shape[0] == 2
    # Codecs add delay/padding; compare energy rather than samples.
    assert abs(decoded.pow(2).mean().sqrt() - audio.pow(2).mean().sqrt()) < 0.05


def test_partial_read_returns_the_requested_window(tmp_path):
    audio = tone()
    path = write_audio(tmp_path / "x.wav", audio, SR, bits=32)
    window, _ = read_audio(path, start=1000, frames=500)
    assert torch.equal(window, audio[:, 1000:1500])
    with pytest.raises(WaveUNetError, match="outside"):
        read_audio(path, start=audio.shape[1])


def test_pcm_writes_clip_instead_of_wrapping(tmp_path):
    loud = torch.full((1, 100), 1.5)
    decoded, _ = read_audio(write_audio(tmp_path / "loud.wav", loud, SR))
    assert decoded.min() > 0.99


def one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    with pytest.raises(WaveUNetError) as error:
        read_audio(tmp_path / "nope.wav")
    assert "nope.wav" in one_line(error) and "no such" in one_line(error)


def test_not_audio(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio at all " * 20)
    with pytest.raises(WaveUNetError) as error:
        read_audio(path)
    assert "text.wav" in one_line(error) and "not a readable audio file" in one_line(error)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 2), dtype=np.float32), SR)
    assert audio_info(path).frames == 0
    with pytest.raises(WaveUNetError) as error:
        read_audio(path)
    assert "empty.wav" in one_line(error) and "empty" in one_line(error)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.flac"
    path.write_bytes(b"")
    with pytest.raises(WaveUNetError, match="zero.flac: not a readable audio file"):
        read_audio(path)


@pytest.mark.parametrize("format", ["wav", "flac", "mp3", "ogg"])
def test_truncated_file(tmp_path, format):
    whole = write_audio(tmp_path / f"whole.{format}", tone(seconds=1.0), SR, format=format)
    cut = tmp_path / f"cut.{format}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WaveUNetError) as error:
        read_audio(cut)
    message = one_line(error)
    assert f"cut.{format}" in message and ("truncated" in message or "corrupt" in message)


def test_mp3_without_a_length_header_is_not_called_truncated(tmp_path):
    # A constant-bit-rate MP3 without a Xing/LAME header: libsndfile estimates its length from the
    # bit rate, a little too long. Written with ffmpeg, as soundfile always writes the header.
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("needs ffmpeg to write an MP3 without a Xing header")
    wav = write_audio(tmp_path / "x.wav", tone(seconds=1.0), SR)
    mp3 = tmp_path / "x.mp3"
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(wav), "-b:a", "128k", "-write_xing", "0", str(mp3)], check=True)
    assert audio_info(mp3).frames > SR  # the estimate overshoots ...
    decoded, _ = read_audio(mp3)  # ... but the file is whole
    assert decoded.shape[1] >= SR  # (plus encoder delay and padding, which only the header could remove)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    samples = np.zeros((100, 1), dtype=np.float32)
    samples[10] = np.nan
    sf.write(path, samples, SR, subtype="FLOAT")
    with pytest.raises(WaveUNetError, match="nan.wav: .*NaN"):
        read_audio(path)
    with pytest.raises(WaveUNetError, match="NaN"):
        write_audio(tmp_path / "out.wav", torch.from_numpy(samples.T), SR)
    assert not (tmp_path / "out.wav").exists()


def test_resample_changes_length_and_keeps_the_tone():
    audio = tone(seconds=1.0, channels=1, frequency=440.0, sr=44100)
    down = resample(audio, 44100, 22050)
    assert down.shape == (1, 22050)
    spectrum = torch.fft.rfft(down[0]).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 s long: bin index = Hz
    assert resample(audio, 44100, 44100) is audio


def test_match_channels():
    stereo = torch.stack([torch.ones(10), -torch.ones(10) * 3])
    assert torch.equal(match_channels(stereo, 1), -torch.ones(1, 10))
    mono = torch.arange(5.0).unsqueeze(0)
    assert torch.equal(match_channels(mono, 2), torch.stack([torch.arange(5.0)] * 2))
    assert match_channels(stereo, 2) is stereo
    surround = torch.ones(6, 10)
    with pytest.raises(WaveUNetError, match="song.wav: has 6 channels"):
        match_channels(surround, 2, name="song.wav")
    assert match_channels(surround, 2, downmix=True).shape == (2, 10)
    assert match_channels(surround, 1, downmix=True).shape == (1, 10)


def test_refuses_to_overwrite(tmp_path):
    path = write_audio(tmp_path / "x.wav", tone(), SR)
    before = path.read_bytes()
    with pytest.raises(WaveUNetError, match="x.wav: already exists"):
        write_audio(path, tone(channels=1), SR)
    assert path.read_bytes() == before
    write_audio(path, tone(channels=1), SR, force=True)
    assert audio_info(path).channels == 1


def test_unwritable_and_missing_folders(tmp_path):
    with pytest.raises(WaveUNetError, match="output folder does not exist"):
        write_audio(tmp_path / "missing" / "x.wav", tone(), SR)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(WaveUNetError, match="locked: output folder is not writable"):
            write_audio(locked / "x.wav", tone(), SR)
    finally:
        locked.chmod(0o700)


def test_bad_format_and_bits(tmp_path):
    with pytest.raises(WaveUNetError, match="unknown audio format"):
        write_audio(tmp_path / "x.aiff", tone(), SR, format="aiff")
    with pytest.raises(WaveUNetError, match="flac cannot be written with 32 bits"):
        write_audio(tmp_path / "x.flac", tone(), SR, format="flac", bits=32)
    assert list(tmp_path.iterdir()) == []
