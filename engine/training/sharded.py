"""training.parallel = "fsdp": torch's FSDP2 (`fully_shard`) under torchrun.

Each transformer block, then the whole model, is sharded over the ranks: a rank
keeps 1/world of every weight, gradient and optimizer moment, and gathers a
block's full weights only while it computes with them.

Checkpoints: every rank takes part in gathering the full weights, which rank 0
writes consolidated as model.safetensors (what `sample`, `export` and a resume on
any number of processes read). The optimizer state stays sharded: each rank gives
its own rows of every moment (`optimizer_shard`), rank 0 writes them one file per
rank (engine.training.optim_shards), and a resume reads each rank's rows from
those files (`load_optimizer_shards`), as slices when the number of processes
changed; no process ever holds the whole optimizer state. Checkpoints of older
llmtui, whose state.safetensors holds the whole optimizer state, load through
`load_optimizer_state`. Nothing is pickled either way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from llmtui.engine.errors import CheckpointError
from llmtui.engine.model.optim import Optimizer
from llmtui.engine.training import distributed, optim_shards
from llmtui.engine.training.optim_shards import ShardReader, chunk_rows
from llmtui.engine.training.snapshot import optimizer_from_files

if TYPE_CHECKING:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

# torch.distributed's FSDP, DTensor and checkpoint modules are imported where a sharded run
# uses them, not with this module: the trainer imports it for every run, and they bring
# sympy and much of torch.fx, among the largest imports of a training start in
# `python -X importtime` (before the first step of a run that never shards).


def _options(**kwargs) -> StateDictOptions:
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(**kwargs)


def _gather() -> StateDictOptions:
    return _options(full_state_dict=True, cpu_offload=True)   # rank 0 gets it, on the CPU


def _load() -> StateDictOptions:
    return _options(full_state_dict=True)                      # every rank holds it


def _dtensor_class() -> type | None:
    """DTensor, or None while torch.distributed.tensor has not been imported (then no
    tensor is a DTensor)."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """Shard each block, then the rest (embeddings, final norm, head) as the root."""
    from torch.distributed.fsdp import fully_shard
    blocks: Any = getattr(model.transformer, "h")   # a ModuleList (nn.Module's __getattr__ is untyped)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    dtensor = _dtensor_class()
    return dtensor is not None and any(isinstance(p, dtensor) for p in model.parameters())


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective: every rank calls it); a tensor as it is."""
    dtensor = _dtensor_class()
    return cast(Any, value).full_tensor() if dtensor is not None and isinstance(value, dtensor) else value


def _for_dcp(optimizer: Optimizer) -> Any:
    """`optimizer` as torch.distributed.checkpoint's set_optimizer_state_dict takes it: in a
    list, since it takes a lone optimizer only as a torch.optim one. It uses what llmtui's
    optimizers have (param_groups, state, step, zero_grad, state_dict, load_state_dict)."""
    return [optimizer]


def _names(model: torch.nn.Module, optimizer: Optimizer) -> list[str]:
    """The parameter names of `optimizer`'s parameters, in its order (its state's indices)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def gather_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights by their plain names (a tied head once): on rank 0; {} elsewhere.
    Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    state = get_model_state_dict(model, options=_gather())
    if getattr(model.config, "tie_embeddings", False):
        state.pop("lm_head.weight", None)
    return {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}


@dataclass
class OptimizerShard:
    """One rank's part of a sharded optimizer's state, as a checkpoint saves it."""
    rows: dict[str, torch.Tensor]      # its rows of every sharded tensor: its own file
    whole: dict[str, torch.Tensor]     # tensors every rank holds whole (step counts): rank 0's are saved
    meta: dict[str, Any]               # state.json's "optimizer": param groups, non-tensor values
    index: optim_shards.ShardIndex     # what the files of all ranks hold


def optimizer_shard(optimizer: Optimizer, rank: int, world: int) -> OptimizerShard:
    """This rank's rows of the optimizer's state, keyed as an unsharded optimizer's state is
    saved ("optimizer.<parameter index>.<key>"); no collective."""
    from torch.distributed.tensor import DTensor, Shard
    sd = optimizer.state_dict()
    rows: dict[str, torch.Tensor] = {}
    whole: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            name = f"optimizer.{index}.{key}"
            if isinstance(value, DTensor):
                local = value.to_local()
                start, stop = chunk_rows(value.shape[0], world, rank) if value.dim() else (0, -1)
                if (tuple(value.placements) != (Shard(0),) or value.device_mesh.size() != world
                        or local.dim() == 0 or local.shape[0] != stop - start):
                    raise RuntimeError(f"{name}: sharded as {value.placements} over {value.device_mesh.size()} "
                                       f"processes ({tuple(local.shape)} here); llmtui saves FSDP2's dim-0 "
                                       "shards only")
                rows[name] = local.detach().to("cpu").contiguous()
                shapes[name] = (tuple(value.shape), value.dtype)
            elif torch.is_tensor(value):
                whole[name] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return OptimizerShard(rows, whole, {"param_groups": sd["param_groups"], "scalars": scalars},
                          optim_shards.build_index(world, shapes))


def load_optimizer_shards(model: torch.nn.Module, optimizer: Optimizer, reader: ShardReader,
                          whole: dict[str, torch.Tensor], meta: dict, source: str) -> None:
    """This rank's rows of a sharded checkpoint's optimizer state into the sharded optimizer:
    read from its own file when the checkpoint was written by as many processes, else as
    slices of the files that hold them. `whole` holds the checkpoint's whole tensors (step
    counts). Everything is checked against the parameters before it is loaded."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    from torch.distributed.tensor import DTensor
    params = [p for group in optimizer.param_groups for p in group["params"]]
    tensors = {name: value for name, value in whole.items() if name.startswith("optimizer.")}
    for name, entry in reader.index.tensors.items():
        index = int(name.split(".")[1])
        param = params[index] if index < len(params) else None
        if not isinstance(param, DTensor) or entry.shape != tuple(param.shape):
            what = "names no parameter" if param is None else f"is {entry.shape}, its parameter {tuple(param.shape)}"
            raise CheckpointError(f"{source}: optimizer state {name} {what}")
        mesh = param.device_mesh
        start, stop = chunk_rows(entry.shape[0], mesh.size(), mesh.get_local_rank())
        local = reader.rows(name, start, stop)
        if local.shape != param.to_local().shape:
            raise RuntimeError(f"{name}: rows {start}:{stop} do not make this process's shard "
                               f"{tuple(param.to_local().shape)}")
        tensors[name] = DTensor.from_local(local.to(param.device), mesh, param.placements, run_check=False,
                                           shape=param.shape, stride=param.stride())
    state = optimizer_from_files(optimizer, tensors, meta, source)
    names = _names(model, optimizer)
    by_name = {names[i]: values for i, values in state["state"].items()}
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]]
    set_optimizer_state_dict(model, _for_dcp(optimizer), {"state": by_name, "param_groups": groups},
                             options=_options())


def load_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full weights (every rank read them) into the sharded model."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    weights = dict(weights)
    if getattr(model.config, "tie_embeddings", False) and "transformer.wte.weight" in weights:
        weights.setdefault("lm_head.weight", weights["transformer.wte.weight"])
    set_model_state_dict(model, dict[str, Any](weights), options=_load())


def load_optimizer_state(model: torch.nn.Module, optimizer: Optimizer, state: dict) -> None:
    """A full, index-keyed optimizer state_dict (checked by engine.training.snapshot) into
    the sharded optimizer: a checkpoint of an unsharded run, or of a sharded run of an
    llmtui before optim_shards (it saved the whole state in state.safetensors)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    names = _names(model, optimizer)
    by_name = {names[i]: values for i, values in state["state"].items()}
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]]
    set_optimizer_state_dict(model, _for_dcp(optimizer), {"state": by_name, "param_groups": groups},
                             options=_load())


class ShardInbox:
    """Rank 0's side of a sharded save: each other rank's optimizer file, received when it is
    written (one at a time in memory). `drain` takes what was not written (a failed save), so
    that no rank waits forever to send."""

    def __init__(self, world: int, channel) -> None:
        self.channel, self.pending = channel, set(range(1, world))

    def file(self, rank: int):
        def receive() -> memoryview:
            self.pending.discard(rank)
            return distributed.receive_from(rank, self.channel)
        return receive

    def drain(self) -> None:
        for rank in sorted(self.pending):
            self.file(rank)()
