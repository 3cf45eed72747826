"""DistributedDataParallel: two CPU processes (gloo) train as one, and only rank 0 writes files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from waveunet.train.launch import train_from_recipe

from helpers import TINY_MODEL

DATA = Path(__file__).resolve().parent / "data"

RECIPE = TINY_MODEL + """
[data]
format = "musdb-hq"
root = "{root}"
train_split = "all"
valid_split = "all"
cache_dir = "{cache}"

[augmentation]
gain = true

[train]
batch_size = 4            # the job's batch: 2 examples per process
epoch_size = 3
workers = 0
max_steps = 6
device = "cpu"

[train.optimizer]
lr = 1e-3
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_rank(rank: int, world_size: int, port: int, recipe: str, folder: str) -> None:
    """What torchrun does for each process: describe the job in the environment, then train."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # Each rank gets its own --out, so that a file written by rank 1 would show.
    result = train_from_recipe(recipe, Path(folder) / f"run-rank{rank}", progress=False)
    torch.save(result.model.state_dict(), Path(folder) / f"weights-rank{rank}.pt")


def test_two_gloo_processes_train_as_one(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(root=DATA / "musdb18hq-sample", cache=tmp_path / "cache"))
    mp.spawn(one_rank, args=(2, free_port(), str(recipe), str(tmp_path)), nprocs=2, join=True)

    rank0, rank1 = (torch.load(tmp_path / f"weights-rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert (tmp_path / "run-rank0" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "run-rank0" / "metrics.jsonl").read_text().count("\n") == 2
    assert not (tmp_path / "run-rank1").exists()

    # The job's batch is dealt out to the ranks and DDP averages their gradients, so two processes
    # with 2 examples each take the same steps as one process with all 4.
    single = train_from_recipe(recipe, tmp_path / "single", progress=False).model.state_dict()
    for name in rank0:
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-6)
