"""Checkpoints: the file alone rebuilds the model; foreign or broken files are refused clearly."""

import os

import pytest
import torch

import waveunet
from waveunet import WaveUNetError
from waveunet.checkpoint import read_checkpoint, save_model


def test_round_trip_rebuilds_config_weights_and_metadata(tmp_path):
    model = waveunet.build_model("M5", levels=3, features=4, sources=("drums", "vocals"), channels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    path = save_model(model, tmp_path / "m.pt", step=123, metadata={"note": "test"})
    loaded = waveunet.load_model(path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.metadata["step"] == 123 and loaded.metadata["note"] == "test"
    assert loaded.metadata["sources"] == ["drums", "vocals"] and loaded.metadata["sample_rate"] == 22050
    assert loaded.metadata["version"] == waveunet.__version__
    mix = torch.randn(1, 1, model.input_length)
    model.eval()
    torch.testing.assert_close(loaded(mix), model(mix), rtol=0, atol=0)


def test_unet2d_round_trip(tmp_path):
    model = waveunet.build_model("unet2d-padded", features=4)
    loaded = waveunet.load_model(save_model(model, tmp_path / "u.pt"))
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_sinc_filters_travel_with_the_checkpoint(tmp_path):
    model = waveunet.build_model("pytorch-default", levels=2, features=8)
    first = model.nets["bass"].unet.down[0].resample
    first.filter.mul_(2)  # an imported checkpoint may carry its own filters
    loaded = waveunet.load_model(save_model(model, tmp_path / "p.pt"))
    torch.testing.assert_close(loaded.nets["bass"].unet.down[0].resample.filter, first.filter)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    model = waveunet.build_model("M4", levels=2, features=2)
    save_model(model, path)
    before = path.read_bytes()

    def broken_save(obj, f):
        open(f, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.pt"]


@pytest.mark.parametrize("content, message", [
    (b"", "not a waveunet or PyTorch checkpoint"),
    (b"hello, I am a text file\n", "not a waveunet or PyTorch checkpoint"),
    (os.urandom(2048), "not a waveunet or PyTorch checkpoint"),
])
def test_non_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WaveUNetError, match=message) as error:
        waveunet.load_model(path)
    assert str(error.value) == f"{path}: not a waveunet or PyTorch checkpoint"  # nothing of torch's internals


def test_foreign_torch_files_are_refused_with_a_hint(tmp_path):
    torch.save({"model_state_dict": {}, "optimizer_state_dict": {}, "state": {"step": 1}}, tmp_path / "ref.pt")
    with pytest.raises(WaveUNetError, match="import-checkpoint"):
        waveunet.load_model(tmp_path / "ref.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(WaveUNetError, match="not a waveunet checkpoint"):
        waveunet.load_model(tmp_path / "tensor.pt")


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_model(waveunet.build_model("M4", levels=2, features=2), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WaveUNetError, match=r"not a waveunet or PyTorch checkpoint \(a truncated or damaged PyTorch file\)"):
        waveunet.load_model(path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    path = save_model(waveunet.build_model("M4", levels=2, features=2), tmp_path / "m.pt")
    ckpt = read_checkpoint(path)
    ckpt["config"]["features"] = 3
    torch.save(ckpt, path)
    with pytest.raises(WaveUNetError, match="do not fit"):
        waveunet.load_model(path)
    ckpt["config"]["flavour"] = "x"
    torch.save(ckpt, path)
    with pytest.raises(WaveUNetError, match="unknown wave-u-net config key"):
        waveunet.load_model(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WaveUNetError, match="no such checkpoint"):
        waveunet.load_model(tmp_path / "nope.pt")
    with pytest.raises(WaveUNetError, match=r"not-a-bundled-name: no such model \(bundled models: demo; or a checkpoint"):
        waveunet.load_model("not-a-bundled-name")
    with pytest.raises(WaveUNetError, match="is a folder, not a checkpoint file"):
        waveunet.load_model(tmp_path)
