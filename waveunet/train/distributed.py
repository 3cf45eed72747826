"""Data-parallel training across processes (``torchrun``), and the single-process case.

``torchrun`` starts one process per device and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`setup` reads
it, joins the process group (NCCL on GPUs, gloo on CPU) and picks the process's device; without
those variables it is a plain single-process run. Every rank holds the same model (DDP averages the
gradients), draws its own share of the training stream, and only rank 0 writes files.

Single machine, 4 GPUs::

    torchrun --standalone --nproc_per_node=4 -m waveunet.train recipes/M4.toml --out runs/m4

Two machines of 8 GPUs each (run on both, with the first one's address)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m waveunet.train recipes/M4.toml --out runs/m4
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device


@dataclass(frozen=True)
class Processes:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files, prints progress and validates."""
        return self.rank == 0


def setup(device_name: str) -> tuple[Processes, torch.device]:
    """Join the ``torchrun`` job described by the environment (if any) and choose the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    processes = Processes(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, processes.local_rank, what="train.device")
    if processes.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return processes, device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()


def broadcast(obj, processes: Processes):
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not processes.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def any_rank(flag: bool, processes: Processes, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any: ranks must agree on when to stop."""
    if not processes.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(value: float, processes: Processes, device: torch.device) -> float:
    """The average of a per-rank number (e.g. the training loss) over all ranks."""
    if not processes.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / processes.world_size
