"""Benchmark of song separation (issue 4): speed against the reference approach, FLOP rate, memory.

Run ``python benchmarks/separate.py`` (about ten minutes on two cores). In one run, on the same 30 s
input (the bundled example looped), it prints:

(a) the time of the reference approach over ours, for ``M4`` and ``pytorch-default``, and the max
    abs difference of their outputs. The reference is the one of the PyTorch Wave-U-Net: the song
    zero-padded by the context, windows of the training input length one at a time (batch 1), each
    giving the next output window (:func:`reference_separate`);
(b) our achieved GFLOP/s on M4 (2 x the multiply-accumulates of one whole-song pass, counted with
    forward hooks on a meta-device copy of the model, over our time) against this machine's float32
    matrix-multiply GFLOP/s, measured in the same run;
(c) the peak resident memory of ``separate_file`` on 1, 5 and 10 minutes of stereo 44.1 kHz audio
    with M4, each in a fresh subprocess;
(d) onnxruntime against PyTorch on the CPU: M4 exported with ``waveunet export``, both separating the
    same 30 s with the same streaming engine (needs the ``onnx`` extra).

``--parts`` picks some of them (e.g. ``--parts d``).

``--device cuda`` runs (a) on a GPU instead (the reference there too, batch 1 as ever). Models have
random weights (seeded): speed and memory do not depend on the weights, and the
comparison in (a) is between two ways of computing the same function. Times are the best of
``--repeats`` alternating runs, which matters on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

import waveunet
from waveunet.audio import read_audio, resample
from waveunet.separation import BATCH_SIZE, WINDOW_SECONDS, inference_tiling, separate, translation_equivariant

EXAMPLE = Path(waveunet.__file__).parent / "examples" / "80s-rock.flac"


def reference_separate(model: nn.Module, mix: torch.Tensor) -> torch.Tensor:
    """The PyTorch Wave-U-Net's way: ``[channels, time]`` at the model's rate -> ``[sources, channels, time]``.

    Pad the end to whole output windows and the context on both sides with zeros, then run windows of
    the training input length at batch size 1, a hop of one output window apart. For translation-
    equivariant models the hop is rounded down to the down-sampling grid (16384 instead of 16389 for
    M4), without which consecutive windows decimate on different phases and compute a different
    function than one pass over the song.
    """
    sizes = model.training_sizes
    hop = sizes.output_length
    if translation_equivariant(model.config):
        hop = hop // model.length_step * model.length_step
    length = mix.shape[-1]
    windows = math.ceil(length / hop)
    padded = F.pad(mix, (sizes.context, windows * hop - length + sizes.input_length - hop - sizes.context))
    outputs = []
    with torch.no_grad():
        for i in range(windows):
            outputs.append(model(padded[None, :, i * hop : i * hop + sizes.input_length])[0, ..., :hop])
    return torch.cat(outputs, -1)[..., :length]


class Clock:
    """Best wall-clock and best process CPU time over several runs of the same work.

    The CPU time (all threads) does not count the time other processes took the cores away, so on a
    shared machine it shows what the code itself costs; the wall-clock time is what a user waits.
    """

    def __init__(self):
        self.wall = self.cpu = math.inf

    def run(self, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self.wall = min(self.wall, time.perf_counter() - wall)
        self.cpu = min(self.cpu, time.process_time() - cpu)
        return result


def time_matmul(clock: Clock, n: int = 2048, repeats: int = 10) -> None:
    """Run one float32 ``n x n`` matrix multiply (``2 n**3`` FLOP) ``repeats`` times on ``clock``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    for _ in range(repeats):
        clock.run(lambda: torch.mm(a, b))


def multiply_accumulates(model: nn.Module, input_length: int) -> int:
    """Multiply-accumulates of the convolutions in one forward pass over ``input_length`` samples."""
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.ConvTranspose1d):
            total += inputs[0].numel() * module.out_channels // module.groups * module.kernel_size[0]
        else:
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0]

    for module in meta.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            module.register_forward_hook(count)
    with torch.no_grad():
        meta(torch.empty(1, model.config.channels, input_length, device="meta"))
    return total


def thirty_seconds(rate: int) -> torch.Tensor:
    """The bundled example looped to 30 s, at ``rate``: ``[2, 30 * rate]``."""
    audio, sample_rate = read_audio(EXAMPLE)
    audio = audio.repeat(1, math.ceil(30 * sample_rate / audio.shape[-1]))[:, : 30 * sample_rate]
    return resample(audio, sample_rate, rate)


def compare(name: str, repeats: int, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    model = waveunet.build_model(name).eval()
    rate = model.config.sample_rate
    mix = thirty_seconds(rate)
    separate(model, mix[:, : rate], rate, device=device)  # warm-up (allocator, oneDNN kernels); moves the model
    torch.backends.cudnn.allow_tf32 = False  # the reference in float32 too, as ours
    reference_clock, our_clock, matmul = Clock(), Clock(), Clock()
    for _ in range(repeats):  # alternate, so that all see the same machine load
        reference = reference_clock.run(lambda: reference_separate(model, mix.to(device)))
        ours = our_clock.run(lambda: torch.stack(list(separate(model, mix, rate, device=device).values())))
        if device == "cpu":
            time_matmul(matmul)
    tiling = inference_tiling(model, length=mix.shape[-1])
    return {"model": name, "reference": reference_clock, "ours": our_clock, "matmul": matmul,
            "max_abs_diff": (reference.cpu() - ours).abs().max().item(), "window": (tiling.input[0], tiling.output[0]),
            "hop": tiling.hop[0], "model_obj": model, "mix": mix}


MEMORY_CHILD = """
import sys, time, torch, waveunet
from waveunet.separation import separate_file

def peak_mb():  # this process's own high-water mark (ru_maxrss would include the parent's, from fork)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

torch.manual_seed(0)
model = waveunet.build_model("M4")
before = peak_mb()
start = time.perf_counter()
separate_file(sys.argv[1], model, sys.argv[2], device="cpu", progress=False)
print(before, peak_mb(), time.perf_counter() - start)
"""


def peak_memory(minutes: float, folder: Path) -> tuple[float, float, float]:
    """(MB after loading the model, peak MB, seconds) of separating ``minutes`` of stereo 44.1 kHz with M4."""
    path = folder / f"song-{minutes:g}min.wav"
    example, rate = read_audio(EXAMPLE)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        for start in range(0, int(minutes * 60 * rate), example.shape[-1]):
            f.write(example[:, : int(minutes * 60 * rate) - start].T.numpy())
    result = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(folder / "out")],
                            capture_output=True, text=True, check=True)
    path.unlink()
    before, peak, seconds = map(float, result.stdout.split())
    return before, peak, seconds


def compare_onnx(repeats: int, folder: Path) -> dict:
    """(d): M4 through onnxruntime and through PyTorch, same engine, same 30 s, on the CPU."""
    from waveunet.export import export_onnx
    from waveunet.onnx_model import load_onnx_model

    torch.manual_seed(0)
    model = waveunet.build_model("M4").eval()
    export_onnx(model, folder / "m4.onnx")
    exported = load_onnx_model(folder / "m4.onnx", "cpu")
    rate = model.config.sample_rate
    mix = thirty_seconds(rate)
    for network in (model, exported):  # warm-up
        separate(network, mix[:, :rate], rate, device="cpu")
    clocks = {"pytorch": Clock(), "onnxruntime": Clock()}
    for _ in range(repeats):  # alternate, so that both see the same machine load
        ours = clocks["pytorch"].run(lambda: torch.stack(list(separate(model, mix, rate, device="cpu").values())))
        theirs = clocks["onnxruntime"].run(lambda: torch.stack(list(separate(exported, mix, rate, device="cpu").values())))
    options = exported.session.get_session_options()
    return {"clocks": clocks, "max_abs_diff": (ours - theirs).abs().max().item(),
            "onnxruntime_threads": options.intra_op_num_threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 5, 10])
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--device", default="cpu", help="where (a) runs: cpu (this machine's cores) or cuda")
    parser.add_argument("--parts", default="abcd", help="which of (a)-(d) to run, e.g. 'd'")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; window {WINDOW_SECONDS} s, batch {BATCH_SIZE}")
    numbers = {}

    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores at the start")
    if "a" in args.parts:
        print("\n(a) 30 s of audio: reference (batch-1 training windows) vs ours; best of "
              f"{args.repeats} alternating runs, wall-clock (process CPU time)")
    for name, target in (("M4", 4.0), ("pytorch-default", 1.5)) if "a" in args.parts else ():
        r = compare(name, args.repeats, args.device)
        model, mix, reference, ours, matmul = (r.pop(k) for k in ("model_obj", "mix", "reference", "ours", "matmul"))
        numbers[name] = {**r, "reference_wall_s": reference.wall, "reference_cpu_s": reference.cpu,
                         "ours_wall_s": ours.wall, "ours_cpu_s": ours.cpu}
        print(f"  {name}: reference {reference.wall:.2f} s ({reference.cpu:.2f} s), ours {ours.wall:.2f} s "
              f"({ours.cpu:.2f} s): {reference.wall / ours.wall:.2f}x ({reference.cpu / ours.cpu:.2f}x), target >= "
              f"{target}x; max abs difference {r['max_abs_diff']:.1e} (target <= 1e-4); our window "
              f"{r['window'][0]} -> {r['window'][1]} samples, hop {r['hop']}")
        if name == "M4" and args.device == "cpu" and "b" in args.parts:
            flop = 2 * multiply_accumulates(model, model.sizes(mix.shape[-1]).input_length)
            mm_flop = 2 * 2048**3
            achieved = (flop / ours.wall / 1e9, flop / ours.cpu / 1e9)
            peak = (mm_flop / matmul.wall / 1e9, mm_flop / matmul.cpu / 1e9)
            numbers["flops"] = {"whole_song_gflop": flop / 1e9, "achieved_gflops_wall": achieved[0],
                                "achieved_gflop_per_cpu_s": achieved[1], "matmul_gflops_wall": peak[0],
                                "matmul_gflop_per_cpu_s": peak[1]}
            print(f"\n(b) M4: one whole-song pass is {flop / 1e9:.1f} GFLOP; ours runs at {achieved[0]:.1f} GFLOP/s "
                  f"({achieved[1]:.1f} per CPU second), float32 matmul at {peak[0]:.1f} GFLOP/s ({peak[1]:.1f} per CPU "
                  f"second): {100 * achieved[0] / peak[0]:.0f}% ({100 * achieved[1] / peak[1]:.0f}%), target >= 50%\n")

    minutes_list = args.minutes if "c" in args.parts else []
    if minutes_list:
        print("(c) peak resident memory of separate_file, M4, stereo 44.1 kHz, fresh process each")
    numbers["memory"] = {}
    with tempfile.TemporaryDirectory() as folder:
        for minutes in minutes_list:
            before, peak, seconds = peak_memory(minutes, Path(folder))
            numbers["memory"][minutes] = {"after_load_mb": before, "peak_mb": peak, "seconds": seconds}
            print(f"  {minutes:4g} min: peak {peak:7.0f} MB (after loading the model: {before:.0f} MB), "
                  f"{seconds:.0f} s, real-time factor {seconds / (60 * minutes):.3f}")
        if "d" in args.parts:
            r = compare_onnx(args.repeats, Path(folder))
            torch_clock, ort_clock = r["clocks"]["pytorch"], r["clocks"]["onnxruntime"]
            numbers["onnx"] = {"pytorch_wall_s": torch_clock.wall, "pytorch_cpu_s": torch_clock.cpu,
                               "onnxruntime_wall_s": ort_clock.wall, "onnxruntime_cpu_s": ort_clock.cpu,
                               "max_abs_diff": r["max_abs_diff"], "onnxruntime_threads": r["onnxruntime_threads"]}
            print(f"\n(d) M4 on 30 s, the same engine, CPU; best of {args.repeats} alternating runs, wall-clock (process "
                  f"CPU time): PyTorch {torch_clock.wall:.2f} s ({torch_clock.cpu:.2f} s), onnxruntime {ort_clock.wall:.2f} s "
                  f"({ort_clock.cpu:.2f} s): onnxruntime takes {ort_clock.wall / torch_clock.wall:.2f}x PyTorch's time "
                  f"({ort_clock.cpu / torch_clock.cpu:.2f}x); max abs difference {r['max_abs_diff']:.1e}; "
                  f"onnxruntime threads {r['onnxruntime_threads'] or 'default'}, torch threads {torch.get_num_threads()}")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
