"""Image data for the 2D U-Net: files -> tensors, folders, splits, windows, weights, augmentation."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from waveunet.errors import WaveUNetError
from waveunet.image.augment import AugmentConfig, augment, warp
from waveunet.image.data import ImageDataConfig, SegmentationFolder, read_image, read_mask, split_names
from waveunet.image.datasets import IGNORE_INDEX, RandomCrops, ValidationWindows
from waveunet.image.weights import WeightMapConfig, border_weights, class_balance, unet_weight_map
from waveunet.image.windows import WindowShape
from waveunet.tiling import reflect_crop, reflect_pad

ISBI = Path(__file__).resolve().parents[1] / "data" / "isbi2012-em" / "train"
GEOMETRY_ONLY = AugmentConfig(brightness=0.0, contrast=0.0)


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def blocks(height: int, width: int, seed: int, size: int = 8, classes: int = 2) -> np.ndarray:
    """A random class-index mask [height, width] of size x size blocks: no symmetry to hide a misalignment."""
    coarse = np.random.default_rng(seed).integers(0, classes, (height // size + 1, width // size + 1))
    return np.kron(coarse, np.ones((size, size), dtype=np.int64))[:height, :width]


def folder(root: Path, count: int = 3, size: tuple[int, int] = (40, 48)) -> Path:
    """root/images/<i>.png (grey) with two-level masks root/masks/<i>.png."""
    for i in range(count):
        mask = blocks(*size, seed=i)
        save(root / "images" / f"{i:02d}.png", (np.random.default_rng(i).random(size) * 255).astype(np.uint8))
        save(root / "masks" / f"{i:02d}.png", (mask * 255).astype(np.uint8))
    return root


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(WaveUNetError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- files -> tensors -------------------------------------------------------------------------


def test_grey_and_colour_images_scale_to_unit_range(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
    colour = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = read_image(save(tmp_path / "grey.png", grey))
    assert image.shape == (1, 12, 10) and image.dtype == torch.float32
    assert torch.equal(image[0], torch.from_numpy(grey.astype(np.float32) / 255))
    rgb = read_image(save(tmp_path / "colour.tif", colour))
    assert rgb.shape == (3, 12, 10)
    assert torch.equal(rgb, torch.from_numpy(colour.transpose(2, 0, 1).astype(np.float32) / 255))


def test_channels_argument_converts(tmp_path):
    colour = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = save(tmp_path / "colour.png", colour)
    luma = read_image(path, channels=1)
    expected = (colour.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert luma.shape == (1, 6, 7)
    assert torch.allclose(luma[0], torch.from_numpy(expected), atol=1e-6)
    grey = read_image(save(tmp_path / "grey.png", colour[..., 0]), channels=3)
    assert grey.shape == (3, 6, 7) and torch.equal(grey[0], grey[2])


def test_sixteen_bit_tiff_and_jpeg(tmp_path):
    deep = (np.arange(8 * 8, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    image = read_image(save(tmp_path / "deep.tif", deep))
    assert torch.allclose(image[0], torch.from_numpy(deep / 65535.0).float())
    photo = read_image(save(tmp_path / "photo.jpg", np.full((9, 11, 3), 128, np.uint8)))
    assert photo.shape == (3, 9, 11) and abs(float(photo.mean()) - 128 / 255) < 0.02


def test_masks_class_index_and_two_level(tmp_path):
    indices = blocks(16, 16, seed=3, size=4, classes=3).astype(np.uint8)
    assert torch.equal(read_mask(save(tmp_path / "three.png", indices), num_classes=3), torch.from_numpy(indices).long())
    palette = Image.fromarray(indices, "L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "palette.png")
    assert torch.equal(read_mask(tmp_path / "palette.png", num_classes=3), torch.from_numpy(indices).long())
    two = read_mask(save(tmp_path / "two.png", (indices > 0).astype(np.uint8) * 255))
    assert two.dtype == torch.int64 and torch.equal(two, torch.from_numpy(indices > 0).long())


def test_mask_with_unknown_values_names_file_and_values(tmp_path):
    path = save(tmp_path / "bad.png", np.array([[0, 7], [255, 0]], np.uint8))
    one_line_error(lambda: read_mask(path), "bad.png", "0, 7, 255")
    # class 2 is fine for three classes but not for two
    path = save(tmp_path / "three.png", np.array([[0, 1], [2, 0]], np.uint8))
    one_line_error(lambda: read_mask(path, num_classes=2), "three.png", "0, 1, 2")
    assert read_mask(path, num_classes=3).max() == 2


COLOURS = {"background": (0, 0, 0), "road": (128, 64, 128), "sky": (70, 130, 180)}


def test_colour_masks_rgb_palette_and_grey(tmp_path):
    indices = blocks(16, 24, seed=4, size=4, classes=3)
    table = np.array(list(COLOURS.values()), np.uint8)
    assert torch.equal(read_mask(save(tmp_path / "rgb.png", table[indices]), colours=COLOURS), torch.from_numpy(indices))
    palette = Image.fromarray((2 - indices).astype(np.uint8))  # palette order need not be the class order
    palette.putpalette([int(v) for v in table[::-1].flatten()] + [0] * (768 - 9))
    palette.save(tmp_path / "palette.png")
    assert torch.equal(read_mask(tmp_path / "palette.png", colours=COLOURS), torch.from_numpy(indices))
    grey = {"membrane": (0, 0, 0), "cell": (255, 255, 255)}  # the ISBI masks read by colour
    expected = read_mask(ISBI / "masks" / "00.png")
    assert torch.equal(read_mask(ISBI / "masks" / "00.png", colours=grey), expected)


def test_an_unknown_mask_colour_is_one_error_naming_file_colour_and_place(tmp_path):
    table = np.array(list(COLOURS.values()), np.uint8)
    rgb = table[blocks(10, 12, seed=5, size=2, classes=3)]
    rgb[3, 7] = (200, 10, 10)
    rgb[8, 1] = (200, 10, 10)
    path = save(tmp_path / "mask.png", rgb)
    one_line_error(lambda: read_mask(path, colours=COLOURS), "mask.png: colour #c80a0a [200, 10, 10]",
                   "first at x=7, y=3; 2 pixels", "none of the classes (background #000000, road #804080, sky #4682b4)")


def test_class_tables_are_checked():
    config = ImageDataConfig(classes={"a": [0, 0, 0], "b": "#ffffff", "c": [1, 2, 3]})
    assert config.num_classes == 3 and config.class_names == ["a", "b", "c"]
    assert config.colours == {"a": (0, 0, 0), "b": (255, 255, 255), "c": (1, 2, 3)}
    assert ImageDataConfig().num_classes == 2 and ImageDataConfig().class_names == ["0", "1"]
    for bad, message in [({"a": [0, 0, 0]}, "at least two classes"),
                         ({"a": [0, 0, 0], "b": [0, 0, 256]}, "data.classes.b must be [r, g, b]"),
                         ({"a": [0, 0, 0], "b": "#000000"}, "a and b have the same colour #000000"),
                         ({"a b": [0, 0, 0], "c": [1, 1, 1]}, "class name 'a b' may hold only")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            ImageDataConfig(classes=bad)
    with pytest.raises(ValueError, match="data.num_classes = 2 but data.classes names 3"):
        ImageDataConfig(num_classes=2, classes=dict(COLOURS))


def test_unreadable_image_names_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    one_line_error(lambda: read_image(broken), "broken.png")
    one_line_error(lambda: read_image(tmp_path / "missing.png"), "missing.png")


# --- folders and splits -----------------------------------------------------------------------


def test_folder_pairs_by_stem_across_formats(tmp_path):
    root = folder(tmp_path / "set", count=2)
    (root / "images" / "00.png").rename(root / "images" / "00.tif")  # PNG data, TIFF name: Pillow sniffs
    save(root / "images" / "02.tif", np.zeros((40, 48), np.uint8))
    save(root / "masks" / "02.png", np.ones((40, 48), np.uint8))
    (root / "images" / ".hidden.png").write_bytes(b"")
    data = SegmentationFolder(root)
    assert data.names == ["00", "01", "02"] and data.channels == 1
    example = data[1]
    assert example.image.shape == (1, 40, 48) and example.mask.shape == (40, 48)
    assert torch.equal(example.mask, torch.from_numpy(blocks(40, 48, seed=1)))
    assert int(data[2].mask.sum()) == 40 * 48


def test_folder_errors_name_the_file(tmp_path):
    root = folder(tmp_path / "lonely", count=2)
    save(root / "images" / "07.png", np.zeros((40, 48), np.uint8))
    one_line_error(lambda: SegmentationFolder(root), "07.png", "without a mask")

    root = folder(tmp_path / "sizes", count=2)
    save(root / "masks" / "01.png", np.zeros((40, 40), np.uint8))
    one_line_error(lambda: SegmentationFolder(root), "01.png", "40x40", "48x40")

    root = folder(tmp_path / "broken", count=2)
    (root / "images" / "01.png").write_bytes(b"garbage")
    one_line_error(lambda: SegmentationFolder(root), "01.png", "cannot read")

    root = folder(tmp_path / "values", count=2)
    save(root / "masks" / "00.png", np.full((40, 48), 3, np.uint8))
    one_line_error(lambda: SegmentationFolder(root), "00.png", "3")

    root = folder(tmp_path / "mixed", count=2)
    save(root / "images" / "01.png", np.zeros((40, 48, 3), np.uint8))
    one_line_error(lambda: SegmentationFolder(root), "01.png", "channels")
    assert SegmentationFolder(root, channels=3).channels == 3

    one_line_error(lambda: SegmentationFolder(tmp_path / "nowhere"), "nowhere")


def test_split_is_deterministic_and_disjoint():
    names = [f"{i:02d}" for i in range(24)]
    train, valid = split_names(names, valid_fraction=0.125, seed=0)
    assert len(valid) == 3 and sorted(train + valid) == names
    assert split_names(names, valid_fraction=0.125, seed=0) == (train, valid)
    assert split_names(names, valid_fraction=0.125, seed=1)[1] != valid
    assert split_names(names, valid_names=["05", "11"]) == ([n for n in names if n not in ("05", "11")], ["05", "11"])
    assert split_names(names[:2], valid_fraction=0.01)[1] != []  # a positive fraction keeps one
    one_line_error(lambda: split_names(names, valid_names=["99"]), "99")


def test_isbi_slices_load_and_split():
    train, valid = ImageDataConfig(root=str(ISBI)).load()
    assert len(train) == 21 and len(valid) == 3 and not set(train.names) & set(valid.names)
    for example in [*train, *valid]:
        assert example.image.shape == (1, 512, 512) and example.mask.shape == (512, 512)
    cell = torch.cat([example.mask.flatten() for example in [*train, *valid]]).float().mean()
    assert 0.75 < float(cell) < 0.81  # "the all-cell answer scores 0.78"


# --- mirror padding and windows ---------------------------------------------------------------


def test_reflect_padding_matches_torch_and_numpy():
    x = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    pads = [(2, 3), (4, 1)]
    assert torch.equal(reflect_pad(x, pads), F.pad(x, (4, 1, 2, 3), mode="reflect"))
    assert torch.equal(reflect_pad(torch.tensor([1, 2, 3, 4]), [(2, 2)]), torch.tensor([3, 2, 1, 2, 3, 4, 3, 2]))
    # context wider than the image: torch refuses, the reflection folds back as numpy's does
    wide = reflect_pad(x[0, 0].long(), [(9, 13), (7, 20)])
    assert np.array_equal(wide.numpy(), np.pad(x[0, 0].long().numpy(), [(9, 13), (7, 20)], mode="reflect"))


def test_window_shape_and_cuts():
    shape = WindowShape.of(572, 388)
    assert shape.input == (572, 572) and shape.output == (388, 388) and shape.context == (92, 92)
    assert WindowShape.of((20, 30), (20, 30)).context == (0, 0)
    one_line_error(lambda: WindowShape.of(13, 8), "(8, 8)")

    image = torch.rand(2, 30, 40)
    shape = WindowShape.of((18, 14), (10, 6))
    inside = shape.cut_input(image, 10, 12)
    assert inside.shape == (2, 18, 14) and torch.equal(inside, image[:, 6:24, 8:22])
    corner = shape.cut_input(image, 0, 0)  # context mirrored beyond the top-left corner
    assert torch.equal(corner, F.pad(image[None], (4, 4, 4, 4), mode="reflect")[0, :, :18, :14])
    assert torch.equal(shape.cut_output(image[0], 3, 5), image[0, 3:13, 5:11])


def test_covering_windows_tile_the_image():
    shape = WindowShape.of(11, 7)
    coverage = torch.zeros(19, 30)
    for top, left in shape.covering_windows(19, 30):
        assert 0 <= top <= 19 - 7 and 0 <= left <= 30 - 7
        shape.cut_output(coverage, top, left).add_(1)
    assert coverage.min() >= 1


def test_random_windows_stay_inside():
    shape, generator = WindowShape.of(20, 8), torch.Generator().manual_seed(0)
    corners = {shape.random_window(10, 12, generator) for _ in range(300)}
    assert corners == {(top, left) for top in range(3) for left in range(5)}


# --- weight maps ------------------------------------------------------------------------------


def test_class_balance_inverts_frequencies():
    mask = torch.zeros(10, 10, dtype=torch.long)
    mask[:2] = 1  # 20 % foreground
    weights = class_balance(mask, num_classes=3)
    assert torch.isclose(weights.mean(), torch.tensor(1.0))
    assert torch.isclose(weights[0, 0] / weights[9, 9], torch.tensor(4.0))


def test_border_weights_emphasise_gaps_between_cells():
    mask = torch.zeros(30, 40, dtype=torch.long)
    mask[5:25, 2:12] = 1  # a cell, columns 2..11
    mask[5:25, 14:24] = 1  # its neighbour past a two-pixel gap, columns 14..23
    border = border_weights(mask, w0=10.0, sigma=5.0)
    # column 12 is 1 px from the first cell and 2 px from the second
    assert float(border[15, 12]) == pytest.approx(10 * np.exp(-(1 + 2) ** 2 / 50), rel=1e-6)
    assert float(border[15, 13]) == pytest.approx(float(border[15, 12]), rel=1e-6)
    assert float(border[15, 5]) == 0.0  # inside a cell
    assert float(border[15, 39]) < 1e-3 < float(border[15, 26]) < float(border[15, 12])
    lonely = torch.zeros_like(mask)
    lonely[5:25, 2:12] = 1
    assert float(border_weights(lonely).max()) == 0.0  # one cell separates nothing
    total = unet_weight_map(mask, 2, WeightMapConfig())
    assert torch.allclose(total, class_balance(mask, 2) + border)


def test_border_weights_equal_brute_force():
    mask = torch.from_numpy((ndimage.gaussian_filter(np.random.default_rng(4).random((64, 64)), 2) > 0.5).astype(np.int64))
    cells, count = ndimage.label(mask.numpy())
    assert count >= 3
    distances = np.sort([ndimage.distance_transform_edt(cells != label) for label in range(1, count + 1)], axis=0)
    expected = 10 * np.exp(-((distances[0] + distances[1]) ** 2) / 50) * (mask.numpy() == 0)
    assert np.abs(border_weights(mask).numpy() - expected).max() < 1e-6


# --- augmentation -----------------------------------------------------------------------------


def test_augmentation_keeps_image_and_mask_aligned():
    mask = torch.from_numpy(blocks(64, 48, seed=7))
    image = mask.float()[None]  # the image encodes the mask: pixel value == class
    weight = mask.float() * 3.0
    changed = 0
    for seed in range(12):
        out_image, out_mask, out_weight = augment(image, mask, GEOMETRY_ONLY, torch.Generator().manual_seed(seed), weight)
        assert out_image.shape[0] == 1 and out_mask.shape == out_image.shape[1:] == out_weight.shape
        assert out_mask.dtype == torch.int64 and set(out_mask.unique().tolist()) <= {0, 1}
        # where the bilinear image is exactly one class, the nearest-neighbour mask must agree
        pure = (out_image[0] == 0) | (out_image[0] == 1)
        assert pure.float().mean() > 0.5
        assert torch.equal(out_mask[pure], out_image[0][pure].long())
        assert torch.allclose(out_weight[pure], 3.0 * out_image[0][pure])
        changed += out_mask.shape != mask.shape or not torch.equal(out_mask, mask)
    assert changed >= 10


def test_rotation_swaps_height_and_width_for_both():
    mask = torch.from_numpy(blocks(20, 36, seed=2))
    config = AugmentConfig(flip=False, elastic_std=0.0, brightness=0.0, contrast=0.0)
    shapes = set()
    for seed in range(8):
        image, out, _ = augment(mask.float()[None], mask, config, torch.Generator().manual_seed(seed))
        assert torch.equal(image[0].long(), out)
        assert any(torch.equal(out, torch.rot90(mask, k)) for k in range(4))
        shapes.add(tuple(out.shape))
    assert shapes == {(20, 36), (36, 20)}


def test_intensity_jitter_touches_the_image_only():
    mask = torch.from_numpy(blocks(16, 16, seed=5))
    image = torch.rand(3, 16, 16)
    config = AugmentConfig(flip=False, rotate90=False, elastic_std=0.0, brightness=0.3, contrast=0.3)
    out_image, out_mask, _ = augment(image, mask, config, torch.Generator().manual_seed(0))
    assert torch.equal(out_mask, mask) and not torch.equal(out_image, image)
    assert 0.0 <= float(out_image.min()) and float(out_image.max()) <= 1.0


def test_deformation_mirrors_like_reflect_padding():
    image = torch.rand(2, 9, 12)
    shift = torch.zeros(2, 9, 12)
    shift[0], shift[1] = -2.0, -5.0  # sample 2 px up and 5 px left: beyond the top-left border
    assert torch.allclose(warp(image, shift, "bilinear"), reflect_crop(image, (-2, -5), (9, 12)), atol=1e-6)


# --- training and validation samples ----------------------------------------------------------


def encoded(tmp_path: Path, count: int = 2, size: tuple[int, int] = (60, 70)) -> SegmentationFolder:
    """A folder whose images are their masks (0 -> black, 1 -> white)."""
    for i in range(count):
        mask = blocks(*size, seed=10 + i).astype(np.uint8)
        save(tmp_path / "images" / f"{i}.png", mask * 255)
        save(tmp_path / "masks" / f"{i}.png", mask)
    return SegmentationFolder(tmp_path)


def test_random_crops_align_input_context_and_mask(tmp_path):
    data = encoded(tmp_path)
    shape = WindowShape.of((36, 40), (20, 24))
    crops = RandomCrops(data, shape, epoch_size=10, augmentation=GEOMETRY_ONLY, weight_map=WeightMapConfig())
    assert len(crops) == 10
    for n in range(len(crops)):
        image, mask, weight = crops[n]
        assert image.shape == (1, 36, 40) and mask.shape == (20, 24)
        assert weight.shape == (20, 24) and float(weight.min()) > 0
        centre = image[0, 8:28, 8:32]
        pure = (centre == 0) | (centre == 1)
        assert pure.float().mean() > 0.5 and torch.equal(mask[pure], centre[pure].long())
    # example n depends on (seed, n) only: the same again, in another dataset object, past the epoch
    again = RandomCrops(data, shape, epoch_size=3, augmentation=GEOMETRY_ONLY, weight_map=WeightMapConfig())
    assert all(torch.equal(a, b) for a, b in zip(crops[3], again[3]))
    assert not torch.equal(crops[3][0], crops[13][0]) and len(again[25]) == 3
    assert not torch.equal(crops[3][0], RandomCrops(data, shape, epoch_size=10, augmentation=GEOMETRY_ONLY, seed=1)[3][0])


def test_crops_without_augmentation_are_exact_windows(tmp_path):
    data = encoded(tmp_path, count=1)
    shape = WindowShape.of(30, 16)
    crops = RandomCrops(data, shape, epoch_size=5, seed=3)
    for n in range(5):
        image, mask = crops[n]
        assert torch.equal(image[0, 7:23, 7:23].long(), mask)


def test_validation_windows_score_every_pixel_once(tmp_path):
    data = encoded(tmp_path, count=2)
    shape = WindowShape.of(40, 24)
    windows = ValidationWindows(data, shape, weight_map=WeightMapConfig())
    assert len(windows) == 2 * 3 * 3  # 60 and 70 pixels need three 24-pixel windows each
    scored = [0, 0]
    for (number, top, left), index in zip(windows.windows, range(len(windows))):
        image, mask, weight = windows[index]
        assert image.shape == (1, 40, 40) and mask.shape == weight.shape == (24, 24)
        kept = mask != IGNORE_INDEX
        truth = shape.cut_output(data[number].mask, top, left)
        assert torch.equal(mask[kept], truth[kept])
        assert bool((weight[kept] > 0).all()) and not bool(weight[~kept].any())
        assert torch.equal(image[0, 8:32, 8:32].long(), truth)
        scored[number] += int(kept.sum())
    assert scored == [60 * 70, 60 * 70]
    assert all(torch.equal(a, b) for a, b in zip(windows[4][:2], ValidationWindows(data, shape)[4]))


def test_image_smaller_than_the_output_window_is_an_error(tmp_path):
    data = encoded(tmp_path, count=1, size=(30, 50))
    wide = WindowShape.of((28, 48), (20, 40))
    assert len(ValidationWindows(data, wide)) == 2 * 2
    # a quarter turn would make the 50x30 image 30x50, too narrow for the 40-pixel-wide window
    one_line_error(lambda: RandomCrops(data, wide, epoch_size=1, augmentation=AugmentConfig()), "0.png", "50x30", "40x20")
    assert len(RandomCrops(data, wide, epoch_size=1, augmentation=AugmentConfig(rotate90=False))[0]) == 2
    one_line_error(lambda: ValidationWindows(data, WindowShape.of(40, 32)), "0.png", "50x30", "32x32")
