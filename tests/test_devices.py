"""Choosing the device (one rule for every command), and what separation leaves of torch's settings."""

import pytest
import torch

import waveunet
from waveunet.device import resolve_device
from waveunet.errors import WaveUNetError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name, message", [
    ("tpu", "'tpu': choose cpu, cuda or auto"),
    ("gpu", "'gpu': choose cpu, cuda or auto"),
    ("cuda:x", "'cuda:x': choose cpu, cuda or auto"),
])
def test_unknown_device_names_are_one_line_errors(name, message):
    with pytest.raises(WaveUNetError) as error:
        resolve_device(name, what="--device")
    assert str(error.value) == f"--device {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(WaveUNetError, match="'cuda': PyTorch sees no CUDA GPU on this machine"):
        resolve_device("cuda", what="train.device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_index_beyond_the_visible_ones():
    with pytest.raises(WaveUNetError, match="GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("before", [True, False])
def test_separation_restores_tf32_and_the_training_mode(before):
    """Separation turns cuDNN's TF32 off (it is 7e-3 off the float32 result) and puts it back after."""
    model = waveunet.build_model("M4", levels=2, features=4, sample_rate=8000).train()
    seen = []
    model.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = before
        waveunet.separate(model, torch.randn(2, 4000), 8000, device="cpu")
        assert seen and not any(seen)  # off while the model ran
        assert torch.backends.cudnn.allow_tf32 is before and model.training
        with pytest.raises(WaveUNetError):  # and on the way out of a failure too
            waveunet.separate(model, torch.full((2, 100), float("nan")), 8000, device="cpu")
        assert torch.backends.cudnn.allow_tf32 is before
    finally:
        torch.backends.cudnn.allow_tf32 = old
