"""The bundled demonstration model (``waveunet/pretrained/demo.pt``, trained by recipes/quickstart.toml)."""

from __future__ import annotations

from pathlib import Path

import torch

import waveunet
from waveunet.audio import read_audio

TRACK = Path(__file__).resolve().parent / "data" / "musdb18hq-sample" / "train" / "Music Delta - 80s Rock"


def sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return 10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum()).item()


def test_demo_model_loads_by_name_and_says_what_it_is():
    model = waveunet.load_model("demo")
    assert model.config.sources == ("accompaniment", "vocals") and model.config.channels == 2
    assert "demonstration model" in model.metadata["note"] and "seconds of audio" in model.metadata["note"]
    assert (Path(waveunet.__file__).parent / "pretrained" / "demo.pt").stat().st_size < 20 * 2**20


def test_demo_model_separates_the_track_it_was_trained_on():
    model = waveunet.load_model("demo")
    mixture, rate = read_audio(TRACK / "mixture.wav", frames=3 * 44100)
    vocals, _ = read_audio(TRACK / "vocals.wav", frames=3 * 44100)
    estimates = waveunet.separate(model, mixture, rate)
    assert estimates["vocals"].shape == mixture.shape
    # Silence would score 0 dB; the trained weights do far better on their own training track.
    assert sdr(vocals, estimates["vocals"]) > 3.0
    assert sdr(mixture - vocals, estimates["accompaniment"]) > 3.0
