"""``waveunet image import-checkpoint``: checkpoints of yassouali/pytorch-segmentation's trainer for
its ``UNet`` and ``UNetResnet`` import with every key and shape checked and compute what the
original networks compute (within 1e-5), DataParallel's ``module.`` prefixes included; anything
else is one clear error.

The original networks are re-stated here from ``docs/specs/unet-resnet.md`` (the repository's
``models/unet.py`` and PyTorch-Encoding's ``models/resnet.py``), independently of the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import waveunet
from waveunet.cli import main
from waveunet.errors import WaveUNetError
from waveunet.info import describe
from waveunet.image.importer import DATASET_STATISTICS, import_segmentation_checkpoint, original_key
from waveunet.models import UNet2d, UNetResnet

# ------------------------------------------------------------------ the original networks, re-stated


class EncodingBottleneck(nn.Module):
    """PyTorch-Encoding's bottleneck: 1x1, 3x3 (stride, dilation), 1x1 (x4), BN after each, 1x1 + BN shortcut."""

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class EncodingResNet(nn.Module):
    """The dilated ResNet with the deep base: conv1 = 3x3 convs 3->64 (s2)->64->128, bn1(128), stages
    of stride 1, 2, 1, 1 with dilation 1, 1, 2, 4 (the first block of a dilated stage: 1 and 2)."""

    def __init__(self, layers):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = 128
        self.layer1 = self._stage(64, layers[0], 1, 1, 1)
        self.layer2 = self._stage(128, layers[1], 2, 1, 1)
        self.layer3 = self._stage(256, layers[2], 1, 1, 2)
        self.layer4 = self._stage(512, layers[3], 1, 2, 4)

    def _stage(self, planes, blocks, stride, first_dilation, dilation):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        stage = [EncodingBottleneck(self.inplanes, planes, stride, first_dilation, downsample)]
        self.inplanes = planes * 4
        stage += [EncodingBottleneck(self.inplanes, planes, 1, dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)


class OriginalUNetResnet(nn.Module):
    """UNetResnet(num_classes, in_channels=3, backbone): initial, layer1..4, decoder conv1..conv7."""

    def __init__(self, num_classes, layers=(3, 4, 6, 3)):
        super().__init__()
        resnet = EncodingResNet(layers)
        self.initial = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.conv1 = nn.Conv2d(2048, 192, 3, 1, 1)
        self.upconv1 = nn.ConvTranspose2d(192, 128, 4, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(1152, 128, 3, 1, 1)
        self.upconv2 = nn.ConvTranspose2d(128, 96, 4, 2, 1, bias=False)
        self.conv3 = nn.Conv2d(608, 96, 3, 1, 1)
        self.upconv3 = nn.ConvTranspose2d(96, 64, 4, 2, 1, bias=False)
        self.conv4 = nn.Conv2d(320, 64, 3, 1, 1)
        self.upconv4 = nn.ConvTranspose2d(64, 48, 4, 2, 1, bias=False)
        self.conv5 = nn.Conv2d(48, 48, 3, 1, 1)
        self.upconv5 = nn.ConvTranspose2d(48, 32, 4, 2, 1, bias=False)
        self.conv6 = nn.Conv2d(32, 32, 3, 1, 1)
        self.conv7 = nn.Conv2d(32, num_classes, 1, bias=False)

    def forward(self, x):
        height, width = x.shape[-2:]
        x1 = self.layer1(self.initial(x))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)

        def resize(h, like):
            return F.interpolate(h, size=like.shape[-2:], mode="bilinear", align_corners=True)

        h = self.upconv1(self.conv1(x4))
        h = self.upconv2(self.conv2(torch.cat([resize(h, x3), x3], 1)))
        h = self.upconv3(self.conv3(torch.cat([resize(h, x2), x2], 1)))
        h = self.upconv4(self.conv4(torch.cat([resize(h, x1), x1], 1)))
        h = self.upconv5(self.conv5(h))
        if h.shape[-2:] != (height, width):
            h = F.interpolate(h, size=(height, width), mode="bilinear", align_corners=True)
        return self.conv7(self.conv6(h))


def x2conv(n_in, n_out):
    """Two 3x3 convs (to n_out / 2, then n_out), bias-free, each with BN and ReLU."""
    inner = n_out // 2
    return nn.Sequential(nn.Conv2d(n_in, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
                         nn.Conv2d(inner, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU(inplace=True))


class OriginalDown(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.down_conv = x2conv(n_in, n_out)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x):
        return self.pool(self.down_conv(x))  # convolve, then pool: the pooled map is the skip


class OriginalUp(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.up = nn.ConvTranspose2d(n_in, n_in // 2, 2, stride=2)
        self.up_conv = x2conv(n_in, n_out)

    def forward(self, skip, x):
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.up_conv(torch.cat([skip, x], 1))


class OriginalUNet(nn.Module):
    def __init__(self, num_classes, in_channels=3):
        super().__init__()
        self.start_conv = x2conv(in_channels, 64)
        self.down1, self.down2 = OriginalDown(64, 128), OriginalDown(128, 256)
        self.down3, self.down4 = OriginalDown(256, 512), OriginalDown(512, 1024)
        self.middle_conv = x2conv(1024, 1024)
        self.up1, self.up2, self.up3, self.up4 = (OriginalUp(1024, 512), OriginalUp(512, 256), OriginalUp(256, 128),
                                                  OriginalUp(128, 64))
        self.final_conv = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        x1 = self.start_conv(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.middle_conv(self.down4(x4))
        x = self.up4(x1, self.up3(x2, self.up2(x3, self.up1(x4, x))))
        return self.final_conv(x)


# ------------------------------------------------------------------ fixtures


def randomised(model: nn.Module, seed: int, shape) -> nn.Module:
    """Random weights and realistic, non-trivial BatchNorm statistics: those of a batch of random
    images, then perturbed."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            module.momentum = None  # cumulative averages
    model.train()
    with torch.no_grad():
        model(torch.rand(*shape))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.mul_(1 + 0.1 * torch.randn_like(module.running_mean))
            module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.8, 1.25))
    return model.eval()


def trainer_checkpoint(model: nn.Module, arch: str, config: dict | None = None, parallel: bool = True) -> dict:
    """What the original trainer saves, the model wrapped in DataParallel (its default on GPUs)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # momentum buffers in the optimizer state, as in a real checkpoint
    prefix = "module." if parallel else ""
    return {"arch": "DataParallel" if parallel else arch, "epoch": 7,
            "state_dict": {prefix + k: v for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "monitor_best": np.float64(0.6123),
            "config": config if config is not None else {
                "name": arch, "arch": {"type": arch, "args": {"backbone": "resnet50", "freeze_bn": False,
                                                              "freeze_backbone": False}},
                "train_loader": {"type": "VOC", "args": {"crop_size": 380, "batch_size": 8}}}}


@pytest.fixture(scope="module")
def original_resnet():
    return randomised(OriginalUNetResnet(num_classes=5), seed=0, shape=(1, 3, 64, 48))


@pytest.fixture(scope="module")
def original_unet():
    return randomised(OriginalUNet(num_classes=3), seed=1, shape=(1, 3, 48, 32))


def voc(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in DATASET_STATISTICS["VOC"])
    return (x - mean) / std


# ------------------------------------------------------------------ parity


def test_every_key_and_shape_of_both_networks_has_its_counterpart(original_resnet, original_unet, tmp_path):
    for original, arch in ((original_resnet, "UNetResnet"), (original_unet, "UNet")):
        path = tmp_path / f"{arch}.pth"
        torch.save(trainer_checkpoint(original, arch), path)
        model = import_segmentation_checkpoint(path)
        theirs = original.state_dict()
        ours = model.state_dict()
        mapped = {original_key(arch, key): key for key in ours}
        assert set(mapped) == set(theirs) and len(mapped) == len(ours)  # a bijection of the keys
        assert all(ours[key].shape == theirs[k].shape and torch.equal(ours[key], theirs[k]) for k, key in mapped.items())
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in original.parameters())


def test_unet_resnet_import_computes_what_the_original_computes(original_resnet, tmp_path):
    path = tmp_path / "best_model.pth"
    torch.save(trainer_checkpoint(original_resnet, "UNetResnet"), path)
    model = import_segmentation_checkpoint(path, tmp_path / "ours.pt")
    assert isinstance(model, UNetResnet) and model.config.encoder == "resnet50"
    assert model.config.deep_stem and model.config.dilated and model.config.classes == 5
    assert model.config.input_mean == DATASET_STATISTICS["VOC"][0]  # the VOC loader's standardisation, inside
    loaded = waveunet.load_model(tmp_path / "ours.pt")
    assert loaded.metadata["architecture"] == "UNetResnet" and loaded.metadata["epoch"] == 7
    for size, ours in (((64, 48), model), ((67, 45), loaded)):  # divisible by the stride, and not: every resize acts
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            expected, output = original_resnet(voc(image)), ours(image)
        assert output.shape == expected.shape == (1, 5, *size)
        assert expected.std() > 0.1 and (output - expected).abs().max() <= 1e-5


def test_unet_import_computes_what_the_original_computes(original_unet, tmp_path):
    path = tmp_path / "checkpoint-epoch7.pth"
    torch.save(trainer_checkpoint(original_unet, "UNet"), path)
    model = import_segmentation_checkpoint(path, tmp_path / "unet.pt")
    assert isinstance(model, UNet2d) and model.config.skip_pooled and model.config.merge == "interpolate"
    # the unet2d-padded preset is that network
    from dataclasses import replace
    from waveunet.models import PRESETS
    assert replace(model.config, name="x", input_mean=None, input_std=None, output_size=1, classes=2) == \
        replace(PRESETS["unet2d-padded"], name="x", output_size=1)
    # 3x3 convs at 1, 1, 2, 4, 8 and 16 pixels' spacing, pooling between, then back up: 204 pixels
    assert describe(tmp_path / "unet.pt")["receptive_field"] == 204
    assert model.config.classes == 3 and model.config.output_size == 380  # the trainer's crop size
    for size in ((48, 32), (37, 50)):  # odd sizes: ceil-mode pooling, then interpolation to the skip
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            expected, output = original_unet(voc(image)), model(image)
        assert output.shape == expected.shape == (1, 3, *size)
        assert expected.std() > 0.1 and (output - expected).abs().max() <= 1e-5


def test_a_bare_state_dict_without_prefixes_or_config_imports_without_standardisation(original_unet, tmp_path):
    torch.save(original_unet.state_dict(), tmp_path / "weights.pth")
    model = import_segmentation_checkpoint(tmp_path / "weights.pth")
    assert model.config.input_mean is None
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (model(image) - original_unet(image)).abs().max() <= 1e-5


def test_the_cli_writes_a_checkpoint_that_segments(original_resnet, tmp_path):
    torch.save(trainer_checkpoint(original_resnet, "UNetResnet"), tmp_path / "best_model.pth")
    out = tmp_path / "imported.pt"
    result = CliRunner().invoke(main, ["image", "import-checkpoint", str(tmp_path / "best_model.pth"), "-o", str(out),
                                       "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"])
    assert result.exit_code == 0, result.output
    assert "resnet50 encoder" in result.output and "3 channels -> 5 classes" in result.output
    assert waveunet.load_model(out).config.input_std == (0.25, 0.25, 0.25)
    again = CliRunner().invoke(main, ["image", "import-checkpoint", str(tmp_path / "best_model.pth"), "-o", str(out)])
    assert again.exit_code == 1 and "already exists (use --force" in again.output


# ------------------------------------------------------------------ refusals


def one_line(path, **options) -> str:
    with pytest.raises(WaveUNetError) as caught:
        import_segmentation_checkpoint(path, **options)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_another_architecture_missing_and_unexpected_weights_are_one_clear_error(original_resnet, tmp_path):
    good = trainer_checkpoint(original_resnet, "UNetResnet")
    del good["optimizer"]  # half the file, and nothing these refusals look at

    other = dict(good, config={**good["config"], "arch": {"type": "PSPNet", "args": {}}})
    torch.save(other, tmp_path / "psp.pth")
    assert "a checkpoint of PSPNet; only UNet and UNetResnet import" in one_line(tmp_path / "psp.pth")

    missing = dict(good, state_dict={k: v for k, v in good["state_dict"].items() if k != "module.conv5.weight"})
    torch.save(missing, tmp_path / "missing.pth")
    assert "weights do not fit the original UNetResnet (missing conv5.weight)" in one_line(tmp_path / "missing.pth")

    extra = dict(good, state_dict={**good["state_dict"], "module.aux_head.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    assert "(unexpected aux_head.weight)" in one_line(tmp_path / "extra.pth")

    deeper = dict(good, config={**good["config"], "arch": {"type": "UNetResnet", "args": {"backbone": "resnet101"}}})
    torch.save(deeper, tmp_path / "deeper.pth")
    assert "names backbone 'resnet101' but the weights are a resnet50" in one_line(tmp_path / "deeper.pth")

    reshaped = dict(good, state_dict={**good["state_dict"], "module.conv6.weight": torch.zeros(32, 16, 3, 3)})
    torch.save(reshaped, tmp_path / "reshaped.pth")
    assert "conv6.weight has shape [32, 16, 3, 3], expected [32, 32, 3, 3]" in one_line(tmp_path / "reshaped.pth")

    as_unet = dict(good, config={**good["config"], "arch": {"type": "UNet", "args": {}}})
    torch.save(as_unet, tmp_path / "as-unet.pth")
    assert "weights do not fit the original UNet (missing start_conv.0.weight" in one_line(tmp_path / "as-unet.pth")


def test_the_original_in_channels_defect_and_foreign_files_are_refused(original_resnet, tmp_path):
    state = {k: v for k, v in original_resnet.state_dict().items() if not k.startswith("initial.0.0.")}
    state["initial.0.weight"] = torch.zeros(64, 1, 7, 7)  # what UNetResnet(in_channels=1) builds: it cannot run
    torch.save(state, tmp_path / "grey.pth")
    assert "in_channels != 3 defect" in one_line(tmp_path / "grey.pth")

    (tmp_path / "text.pth").write_text("hello")
    assert "not a readable PyTorch checkpoint" in one_line(tmp_path / "text.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "list.pth")
    assert "no state_dict of tensors" in one_line(tmp_path / "list.pth")
    ours = waveunet.save_model(waveunet.build_model("unet2d-padded", features=4), tmp_path / "ours.pt")
    assert "already a waveunet checkpoint" in one_line(ours)
    assert "no such checkpoint file" in one_line(tmp_path / "absent.pth")
