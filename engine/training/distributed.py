"""Data-parallel training under torchrun: one process per device.

`torchrun --nproc_per_node N -m llmtui --run CONFIG` sets RANK, LOCAL_RANK
and WORLD_SIZE; each process trains a replica on its own batches and
DistributedDataParallel averages the gradients (nccl on GPUs, gloo on CPU).
Rank 0 alone writes checkpoints, metrics and terminal output. Decisions that
must be the same everywhere (stop, save now, a non-finite loss) are agreed by
an all-reduce, so no rank waits forever for a collective the others skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1   # processes on this machine

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                       world_size=world,
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def init(ctx: DistContext, device: torch.device) -> None:
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)


def shutdown(ctx: DistContext, clean: bool = True) -> None:
    """Leave the process group; after a clean run wait for every rank first
    (gloo aborts a rank that tears down while a peer still talks to it)."""
    if ctx.enabled and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def agree_max(ctx: DistContext, values: list[int], device: torch.device) -> list[int]:
    """Element-wise maximum over all ranks (flags: any rank asking wins)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def mean(ctx: DistContext, value: torch.Tensor) -> torch.Tensor:
    if not ctx.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def gather(ctx: DistContext, obj) -> list:
    """Every rank's `obj` (JSON-like), on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
