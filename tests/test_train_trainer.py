"""The generic trainer with a non-audio task (the way image segmentation plugs in), schedules and
early stopping."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from waveunet.checkpoint import read_checkpoint
from waveunet.models import UNet2dConfig, build_model
from waveunet.train.config import EarlyStoppingConfig, FineTuneConfig, OptimizerConfig, SchedulerConfig, TrainConfig
from waveunet.train.optim import make_schedule
from waveunet.train.rundir import RunDir
from waveunet.train.state import EarlyStopping
from waveunet.train.stream import IndexedBatches
from waveunet.train.trainer import Task, Trainer


class Squares(Dataset):
    """Example ``n``: an 8x8 image with a bright square, its mask, and per-pixel weights."""

    def __getitem__(self, n):
        g = torch.Generator().manual_seed(n)
        image = torch.rand(1, 8, 8, generator=g) * 0.2
        top, left = torch.randint(0, 5, (2,), generator=g).tolist()
        image[:, top:top + 3, left:left + 3] += 0.8
        mask = (image[0] > 0.5).long()
        return image, mask, torch.ones(8, 8)

    def __len__(self):
        return 1000


def weighted_cross_entropy(scores, targets):
    mask, weights = targets  # the batch's extra tensors arrive as one tuple
    return (torch.nn.functional.cross_entropy(scores, mask, reduction="none") * weights).mean()


def accuracy(model, device):
    images, masks, weights = zip(*(Squares()[10_000 + i] for i in range(16)))
    scores = model(torch.stack(images).to(device))
    loss = weighted_cross_entropy(scores, (torch.stack(masks), torch.stack(weights)))
    return {"valid_loss": loss.item(), "valid_accuracy": (scores.argmax(1) == torch.stack(masks)).float().mean().item()}


def test_a_segmentation_task_trains_with_the_same_trainer(tmp_path):
    """Batches of (image, mask, weights), a weighted loss, a metric to maximise, no fine-tuning."""
    torch.manual_seed(0)
    model = build_model(UNet2dConfig(levels=1, features=4, padding="same", output_size=8))
    config = TrainConfig(batch_size=8, epoch_size=5, max_steps=20, optimizer=OptimizerConfig(lr=3e-2),
                         finetune=FineTuneConfig(enabled=False),
                         early_stopping=EarlyStoppingConfig(monitor="valid_accuracy", mode="max", patience=10))
    task = Task(model, weighted_cross_entropy, IndexedBatches(Squares(), config.epoch_size), accuracy,
                metadata={"task": "squares"})
    run = RunDir(tmp_path / "run")
    run.prepare(resume=False, force=False)
    result = Trainer(task, config, run, progress=False).fit()
    records = run.read_metrics()
    assert [r["step"] for r in records] == [5, 10, 15, 20] and result.step == 20
    assert records[-1]["valid_loss"] < 0.8 * records[0]["valid_loss"]
    assert result.best == max(r["valid_accuracy"] for r in records)
    best = read_checkpoint(run.best)
    assert best["metadata"]["task"] == "squares" and best["metadata"]["valid_accuracy"] == result.best
    assert best["config"]["kind"] == "unet2d"


def test_early_stopping_counts_validations_without_improvement():
    stopping = EarlyStopping(EarlyStoppingConfig(patience=2, mode="min", min_delta=0.1))
    assert stopping.update(1.0) and not stopping.should_stop
    assert not stopping.update(0.95)  # not better by more than min_delta
    assert not stopping.update(float("nan")) and stopping.should_stop
    stopping.restart()
    assert not stopping.should_stop and stopping.best == 1.0
    assert stopping.update(0.5) and stopping.bad_epochs == 0
    maximise = EarlyStopping(EarlyStoppingConfig(patience=1, mode="max"))
    assert maximise.update(0.5) and maximise.update(0.6) and not maximise.update(0.6)


def test_cyclic_schedule_is_the_pytorch_wave_u_nets():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    schedule = make_schedule(optimizer, SchedulerConfig(name="cyclic", cycles=2, min_lr=5e-5), "min", epoch_size=100)
    lrs = []
    for position in range(100):
        schedule.before_step(position)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3) and lrs[50] == pytest.approx(1e-3)  # each cycle starts at lr
    assert lrs[25] == pytest.approx(5e-5 + 0.5 * (1e-3 - 5e-5))
    assert lrs[49] == pytest.approx(5e-5 + 0.5 * (1e-3 - 5e-5) * (1 + math.cos(math.pi * 49 / 50)))
    assert min(lrs) > 5e-5


def test_plateau_schedule_lowers_the_rate():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1.0)
    schedule = make_schedule(optimizer, SchedulerConfig(name="plateau", factor=0.5, patience=1), "min", 10)
    for metric in (1.0, 1.0, 1.0):
        schedule.after_epoch(metric)
    assert optimizer.param_groups[0]["lr"] == 0.5
