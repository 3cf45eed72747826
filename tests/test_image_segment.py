"""Segmenting images of any size: overlap-tile exactness, bounded tiles, files, the CLI, bad inputs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import waveunet
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.image.data import read_image, read_mask
from waveunet.image.segment import SegmentationOutputs, segment, segment_file, segment_files
from waveunet.tiling import reflect_pad
from waveunet.models import build_model

ISBI = Path(__file__).resolve().parents[1] / "data" / "isbi2012-em" / "train" / "images"


@pytest.fixture(scope="module")
def paper_unet():
    """The paper's network (valid convolutions, 4 levels) with 4 instead of 64 features, 68x68 tiles."""
    torch.manual_seed(0)
    return build_model("unet2d-ronneberger", features=4, output_size=60).eval()


@pytest.fixture(scope="module")
def padded_unet():
    torch.manual_seed(1)
    model = build_model("unet2d-padded", in_channels=1, features=4, output_size=64).eval()
    for module in model.modules():  # non-trivial running statistics, so eval mode matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


class TileLog:
    """Records the shape of every batch of tiles the model is given."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.shapes.append(tuple(args[0].shape)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def whole_pass_on_mirrored_image(model, image):
    """One forward pass over the image mirror-padded by the context (and up to a valid size), cropped back."""
    height, width = image.shape[-2:]
    context = model.context
    sides = [model.sizes(n).input_length for n in (height, width)]
    padded = reflect_pad(image, [(context, side - n - context) for side, n in zip(sides, (height, width))])
    with torch.no_grad():
        return model(padded[None])[0, :, :height, :width]


def test_tiled_prediction_equals_one_pass_over_the_mirror_padded_image(paper_unet):
    image = torch.rand(1, 150, 130, generator=torch.Generator().manual_seed(0))
    with TileLog(paper_unet) as log:
        scores = segment(paper_unet, image, tile=60)
    assert scores.shape == (2, 150, 130)
    expected = whole_pass_on_mirrored_image(paper_unet, image)
    assert expected.shape[-2:] == (150, 130)
    assert torch.allclose(scores, expected, atol=1e-5, rtol=0)
    # hops of 64 (the pooling grid of 4 levels): 3 x 3 tiles, each exactly one model input tile
    tile = paper_unet.sizes(64).input_length
    assert log.shapes == [(1, 1, tile, tile)] * 9


def test_memory_is_bounded_by_the_tile_not_the_image(paper_unet):
    """A 4x larger image takes more tiles, never a larger one (peak memory follows the tile batch)."""
    small, large = torch.rand(1, 100, 100), torch.rand(1, 400, 400)
    with TileLog(paper_unet) as log_small:
        segment(paper_unet, small, tile=60)
    with TileLog(paper_unet) as log_large:
        segment(paper_unet, large, tile=60, batch_size=2)
    assert set(log_small.shapes) == {(1, 1, 252, 252)}
    assert max(shape[0] for shape in log_large.shapes) == 2
    assert {shape[-2:] for shape in log_large.shapes} == {(252, 252)}
    assert sum(shape[0] for shape in log_large.shapes) == 49  # 7 x 7 tiles of 64 output pixels


def test_padded_network_one_pass_within_a_tile_and_faded_tiles_beyond(padded_unet):
    image = torch.rand(1, 50, 37)
    with torch.no_grad():
        assert torch.equal(segment(padded_unet, image), padded_unet(image[None])[0])
    large = torch.rand(1, 150, 100)
    with TileLog(padded_unet) as log:
        scores = segment(padded_unet, large)
    assert scores.shape == (2, 150, 100) and torch.isfinite(scores).all()
    assert {shape[-2:] for shape in log.shapes} == {(64, 64)} and len(log.shapes) > 1
    # far from tile borders the cross-fade blends near-identical predictions of the same pixels
    with torch.no_grad():
        whole = padded_unet(large[None])[0]
    assert (scores.argmax(0) == whole.argmax(0)).float().mean() > 0.9


def test_segment_keeps_training_mode_and_refuses_wrong_channels(paper_unet):
    paper_unet.train()
    segment(paper_unet, torch.rand(1, 40, 40))
    assert paper_unet.training
    paper_unet.eval()
    with pytest.raises(ValueError, match="channel"):
        segment(paper_unet, torch.rand(3, 40, 40))


def test_checkpoint_round_trip_segments_the_same(paper_unet, tmp_path):
    path = waveunet.save_model(paper_unet, tmp_path / "unet.pt")
    loaded = waveunet.load_model(path)
    image = read_image(ISBI / "04.png")[:, :64, :50]  # one tile
    assert torch.equal(waveunet.segment(loaded, image), waveunet.segment(paper_unet, image))


# ----------------------------------------------------------------------------------------- files


def write_image(path: Path, height: int, width: int, mode: str = "L", seed: int = 0) -> Path:
    shape = (height, width) if mode == "L" else (height, width, 3)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_masks_have_the_image_size_and_hold_class_indices(paper_unet, tmp_path):
    grey = write_image(tmp_path / "grey.png", 70, 90)
    colour = write_image(tmp_path / "colour.tif", 45, 33, mode="RGB", seed=1)  # converted to the model's grey
    errors = segment_files(paper_unet, [grey, colour], tmp_path / "out", with_overlay=True, progress=False)
    assert errors == []
    for source, (height, width) in ((grey, (70, 90)), (colour, (45, 33))):
        written = read_mask(tmp_path / "out" / f"{source.stem}.png", num_classes=2)
        assert written.shape == (height, width)
        expected = segment(paper_unet, read_image(source, channels=1)).argmax(0)
        assert torch.equal(written, expected)
        with Image.open(tmp_path / "out" / f"{source.stem}.overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == (width, height)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "colour.overlay.png", "colour.png", "grey.overlay.png", "grey.png"]


def test_existing_outputs_are_kept_unless_forced(paper_unet, tmp_path):
    image = write_image(tmp_path / "a.png", 30, 30)
    outputs = SegmentationOutputs.of(image, tmp_path / "out", with_overlay=False)
    (tmp_path / "out").mkdir()
    outputs.mask.write_bytes(b"keep me")
    with pytest.raises(WaveUNetError, match="already exists"):
        segment_file(paper_unet, image, outputs)
    assert outputs.mask.read_bytes() == b"keep me"
    segment_file(paper_unet, image, outputs, force=True)
    assert read_mask(outputs.mask).shape == (30, 30)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]  # no temporary left behind


def test_cli_reports_bad_images_and_segments_the_rest(paper_unet, tmp_path):
    model = waveunet.save_model(paper_unet, tmp_path / "unet.pt")
    good = write_image(tmp_path / "good.png", 40, 50)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    missing = tmp_path / "missing.png"
    twin = write_image(tmp_path / "good.jpg", 40, 50)  # would write out/good.png a second time
    result = CliRunner().invoke(main, ["image", "segment", str(broken), str(good), str(missing), str(twin),
                                       "--model", str(model), "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 4 and "Traceback" not in result.output
    assert "broken.png: cannot read the image" in lines[0]
    assert "missing.png: no such file" in lines[1]
    assert "good.jpg: would write" in lines[2]
    assert "3 of 4 image(s) failed" in lines[3]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]
    assert read_mask(tmp_path / "out" / "good.png").shape == (40, 50)

    again = CliRunner().invoke(main, ["image", "segment", str(good), "--model", str(model), "--out",
                                      str(tmp_path / "out"), "--no-progress"])
    assert again.exit_code == 1 and "already exists (use --force" in again.output
    forced = CliRunner().invoke(main, ["image", "segment", str(good), "--model", str(model), "--out",
                                       str(tmp_path / "out"), "--force", "--no-progress"])
    assert forced.exit_code == 0, forced.output


def test_cli_refuses_an_audio_checkpoint(tmp_path):
    audio = waveunet.save_model(build_model("M4", levels=2, features=4), tmp_path / "m4.pt")
    image = write_image(tmp_path / "a.png", 20, 20)
    result = CliRunner().invoke(main, ["image", "segment", str(image), "--model", str(audio), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {audio}: a Wave-U-Net (audio) model, not a 2D U-Net (image) model; use `waveunet separate`"


def test_a_failed_segment_leaves_no_folder_it_created(paper_unet, tmp_path):
    """Nothing written, nothing left: the output folder (and its parents) it made are removed again;
    a folder that was there before stays."""
    model = waveunet.save_model(paper_unet, tmp_path / "unet.pt")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["image", "segment", str(broken), "--model", str(model), "--out",
                                       str(tmp_path / "new" / "masks"), "--no-progress"])
    assert result.exit_code == 1 and "broken.png: cannot read the image" in result.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    result = CliRunner().invoke(main, ["image", "segment", str(broken), "--model", str(model), "--out",
                                       str(tmp_path / "kept"), "--no-progress"])
    assert result.exit_code == 1 and (tmp_path / "kept").is_dir()


def test_masks_are_palette_pngs_in_the_default_colours(paper_unet, tmp_path):
    from waveunet.image.palette import PALETTE

    image = write_image(tmp_path / "a.png", 30, 40)
    segment_files(paper_unet, [image], tmp_path / "out", progress=False)
    with Image.open(tmp_path / "out" / "a.png") as mask:
        assert mask.mode == "P" and mask.getpalette()[:6] == [*PALETTE[0], *PALETTE[1]]
