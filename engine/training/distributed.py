"""Data-parallel training under torchrun: one process per device.

`torchrun --nproc_per_node N -m llmtui --run CONFIG` sets RANK, LOCAL_RANK
and WORLD_SIZE; each process trains a replica on its own batches and
DistributedDataParallel averages the gradients (nccl on GPUs, gloo on CPU).
Rank 0 alone writes checkpoints, metrics and terminal output. Decisions that
must be the same everywhere (stop, save now, a non-finite loss) are agreed by
an all-reduce, so no rank waits forever for a collective the others skipped.

`torchrun --max-restarts N`: when a process dies, torchrun stops the others
and starts the whole group again (`Elastic` holds what it tells them). The
restarted group meets in a new store (`_own_store`) and continues the run from
the newest checkpoint its job wrote (engine.training.trainer decides, on rank 0).
"""

from __future__ import annotations

import os
import socket
import time
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


@dataclass(frozen=True)
class Elastic:
    """What torchrun's agent tells the processes it starts (empty outside torchrun)."""
    run_id: str | None = None     # TORCHELASTIC_RUN_ID: the job (the rendezvous id)
    restart: int = 0              # TORCHELASTIC_RESTART_COUNT: this agent's restarts so far
    max_restarts: int = 0         # TORCHELASTIC_MAX_RESTARTS: torchrun's --max-restarts
    agent_store: bool = False     # TORCHELASTIC_USE_AGENT_STORE: the agent serves the store

    @property
    def enabled(self) -> bool:
        """Started by torchrun (its elastic agent)."""
        return self.run_id is not None


def elastic_from_env() -> Elastic:
    def count(name: str) -> int:
        try:
            return max(0, int(os.environ.get(name, "0")))
        except ValueError:
            return 0
    return Elastic(run_id=os.environ.get("TORCHELASTIC_RUN_ID"),
                   restart=count("TORCHELASTIC_RESTART_COUNT"),
                   max_restarts=count("TORCHELASTIC_MAX_RESTARTS"),
                   agent_store=os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def agent_started() -> float | None:
    """Unix time torchrun's agent (the parent of every process it starts) started, or
    None when it cannot be read. Whatever the current torchrun job wrote is newer."""
    try:
        import psutil
        return psutil.Process(os.getppid()).create_time()
    except Exception:  # noqa: BLE001 - no such process, no permission: unknown
        return None


def init(ctx: DistContext, device: torch.device) -> None:
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if elastic_from_env().agent_store:
            dist.init_process_group(backend=backend, store=_own_store(ctx), rank=ctx.rank,
                                    world_size=ctx.world_size)
        else:
            dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)


_STORE_KEY = "llmtui/process-group-store"
_served: list = []     # rank 0's own store, serving the others for the life of the process


def _own_store(ctx: DistContext) -> "dist.Store":
    """A new, empty store for this group's process group. torchrun's agent serves the
    store its processes meet in and keeps it across restarts, keys and all: a group it
    restarts would read the dead processes' addresses there and fail to connect (gloo:
    "connection refused"; pytorch/pytorch#135712). So rank 0 serves a store of its own
    on a free port and names it in the agent's; the others read that name and connect.
    A name left by a dead rank 0 refuses the connection (torchrun stops every process
    of a group before it starts the next), so they read it again until it answers."""
    timeout = dist.default_pg_timeout     # what init_process_group waits by default
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = dist.TCPStore(host, port, ctx.world_size, is_master=False, timeout=timeout)
    if ctx.is_main:
        own = dist.TCPStore(host, 0, ctx.world_size, is_master=True, timeout=timeout,
                            wait_for_workers=False)
        _served.append(own)
        agent.set(_STORE_KEY, f"{host}:{own.port}")
        return own
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        own_host, _, own_port = agent.get(_STORE_KEY).decode().rpartition(":")
        try:   # a quick, quiet test first: a TCPStore client that cannot connect logs pages
            socket.create_connection((own_host, int(own_port)), timeout=2).close()
            return dist.TCPStore(own_host, int(own_port), ctx.world_size, is_master=False, timeout=timeout)
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def shutdown(ctx: DistContext, clean: bool = True) -> None:
    """Leave the process group; after a clean run wait for every rank first
    (gloo aborts a rank that tears down while a peer still talks to it)."""
    if ctx.enabled and dist.is_initialized():
        if clean:
            dist.barrier()
        _channels.clear()
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


def from_main(ctx: DistContext, obj):
    """Rank 0's `obj` (JSON-like), on every rank: one decision for all."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(ctx: DistContext, obj) -> list:
    """Every rank's `obj` (JSON-like), on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


_channels: list = []   # the gloo group for bytes, once made


def byte_channel(ctx: DistContext) -> "dist.ProcessGroup | None":
    """The group that carries bytes between processes (checkpoint files): the default group
    under gloo, else a gloo group of the same processes, made on first use, so that the
    bytes stay in host memory. Every rank calls it at the same point (making it is a
    collective)."""
    if not ctx.enabled or dist.get_backend() == "gloo":
        return None
    if not _channels:
        _channels.append(dist.new_group(backend="gloo"))
    return _channels[0]


def send_to_main(data: bytes, channel: "dist.ProcessGroup | None") -> None:
    """Send `data` to rank 0, which takes it with `receive_from` (blocks until it does)."""
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    dist.send(torch.tensor([payload.numel()], dtype=torch.int64), dst=0, group=channel)
    dist.send(payload, dst=0, group=channel)


def receive_from(rank: int, channel: "dist.ProcessGroup | None") -> memoryview:
    """The bytes rank `rank` sends with `send_to_main` (on rank 0)."""
    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, src=rank, group=channel)
    payload = torch.empty(int(size.item()), dtype=torch.uint8)
    dist.recv(payload, src=rank, group=channel)
    return payload.numpy().data
