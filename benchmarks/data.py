"""Does the data pipeline keep up with training? Loader examples/s against M4's consumption.

Measures, on this machine and on the bundled real track (``tests/data/musdb18hq-sample``):

1. the examples per second a DataLoader delivers from the decoded cache (M4's windows: stereo,
   22050 Hz, 147443 input / 16389 output samples, targets accompaniment and vocals), with the
   paper's gain augmentation and with every augmentation switched on;
2. the training steps per second of the M4 preset at batch 16 (forward, MSE loss, backward, Adam);

and prints the ratio of (1) to the examples the model consumes, ``16 * steps/s``. The issue asks for
at least 10x. Both are measured on their own, one after the other, so they do not compete for cores.

    python benchmarks/data.py [--workers 2] [--batches 20] [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import waveunet
from waveunet.data import Augmentation, DataConfig, StreamSampler, training_examples

# The bundled MUSDB18-HQ track, read as a track folder (same files, no need for musdb's ffmpeg check).
SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "musdb18hq-sample" / "train"
BATCH = 16


def loader_rate(data, workers: int, batches: int) -> float:
    """Examples per second a DataLoader delivers, after one warm-up batch (worker start, page cache)."""
    sampler = StreamSampler(BATCH * (batches + 1))
    loader = iter(DataLoader(data, batch_size=BATCH, sampler=sampler, num_workers=workers))
    next(loader)
    start = time.perf_counter()
    delivered = sum(mixture.shape[0] for mixture, _ in loader)
    return delivered / (time.perf_counter() - start)


def training_rate(model, steps: int, device: torch.device) -> float:
    """Training steps per second at batch 16 (random audio: the cost does not depend on the values)."""
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    c = model.config
    mixture = torch.rand(BATCH, c.channels, model.input_length, device=device) * 2 - 1
    targets = torch.rand(BATCH, len(c.sources), c.channels, model.output_length, device=device) * 2 - 1

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(mixture), targets)
        loss.backward()
        optimiser.step()

    step()  # warm-up: allocator and kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # CUDA runs asynchronously: wait for the last step before stopping the clock
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=20, help="batches of 16 to time the loader on")
    parser.add_argument("--steps", type=int, default=3, help="training steps to time M4 on")
    parser.add_argument("--device", default="cpu", help="where M4 trains (cpu, cuda); the loader is always on the CPU")
    args = parser.parse_args()

    model = waveunet.build_model("M4").train()
    c = model.config
    print(f"M4: {c.channels} channels, {c.sample_rate} Hz, input {model.input_length}, output {model.output_length}, "
          f"sources {', '.join(c.sources)}; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as cache_dir:
        config = DataConfig(format="folder", root=str(SAMPLE), cache_dir=cache_dir)
        start = time.perf_counter()
        windows = dict(targets=c.sources, sample_rate=c.sample_rate, channels=c.channels,
                       input_length=model.input_length, output_length=model.output_length, progress=False)
        paper = training_examples(config, augmentation=Augmentation(gain=True), **windows)
        print(f"cache built in {time.perf_counter() - start:.2f} s ({len(paper.cache)} track)")
        everything = training_examples(config, augmentation=Augmentation(gain=True, channel_swap=True, remix=True), **windows)
        rates = {
            "gain (paper)": loader_rate(paper, args.workers, args.batches),
            "gain + swap + remix": loader_rate(everything, args.workers, args.batches),
        }

    steps_per_second = training_rate(model, args.steps, torch.device(args.device))
    consumed = BATCH * steps_per_second
    print(f"model on {args.device}: {steps_per_second:.3f} steps/s at batch {BATCH} = {consumed:.2f} examples/s consumed "
          f"({1 / steps_per_second:.2f} s per step)")
    for name, rate in rates.items():
        verdict = "ok" if rate >= 10 * consumed else "TOO SLOW (need >= 10x)"
        print(f"loader, {name}, {args.workers} workers: {rate:.1f} examples/s = {rate / consumed:.0f}x the model -> {verdict}")


if __name__ == "__main__":
    main()
