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


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with or without CUDA GPUs and Apple's MPS."""
    def pretend(cuda: int = 0, mps: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.backends.mps, "is_built", lambda: mps)
    return pretend


@pytest.mark.parametrize("cuda, mps, expected", [(1, True, "cuda:0"), (0, True, "mps"), (0, False, "cpu"), (2, False, "cuda:0")])
def test_auto_picks_cuda_then_mps_then_the_cpu(machine, cuda, mps, expected):
    machine(cuda, mps)
    assert resolve_device("auto", mps=True) == resolve_device(None, mps=True) == torch.device(expected)
    # callers that cannot run on MPS (float64 scoring, distributed training) never get it
    assert resolve_device("auto") == torch.device("cpu" if expected == "mps" else expected)


def test_mps_is_accepted_where_torch_has_it(machine):
    machine(0, True)
    assert resolve_device("mps", mps=True) == torch.device("mps")
    with pytest.raises(WaveUNetError) as error:
        resolve_device("tpu", what="--device", mps=True)
    assert str(error.value) == "--device 'tpu': choose cpu, cuda, mps or auto"
    with pytest.raises(WaveUNetError) as error:
        resolve_device("mps", what="train.device")
    assert str(error.value) == "train.device 'mps': choose cpu, cuda or auto"


def test_mps_without_it_is_a_one_line_error(machine):
    machine(0, False)
    with pytest.raises(WaveUNetError) as error:
        resolve_device("mps", what="--device", mps=True)
    assert str(error.value) == "--device 'mps': PyTorch has no Apple MPS GPU on this machine (use cpu or auto)"
    with pytest.raises(WaveUNetError, match="'mps': PyTorch has no Apple MPS GPU"):
        waveunet.separate(waveunet.build_model("M4", levels=2, features=4), torch.zeros(2, 100), 22050, device="mps")


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs Apple's MPS")
def test_separation_on_mps_equals_the_cpu():
    model = waveunet.build_model("M4", levels=4, features=8, sample_rate=8000).eval()
    song = 0.3 * torch.randn(2, 20000)
    cpu, mps = waveunet.separate(model, song, 8000, device="cpu"), waveunet.separate(model, song, 8000, device="mps")
    for source in cpu:
        assert (cpu[source] - mps[source].cpu()).abs().max() <= 1e-4


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
