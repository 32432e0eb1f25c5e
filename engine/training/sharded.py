"""training.parallel = "fsdp": torch's FSDP2 (`fully_shard`) under torchrun.

Each transformer block, then the whole model, is sharded over the ranks: a rank
keeps 1/world of every weight, gradient and optimizer moment, and gathers a
block's full weights only while it computes with them. Checkpoints stay in
llmtui's one format (engine.training.snapshot): every rank takes part in
gathering the full weights and optimizer state, rank 0 writes them, consolidated,
as model.safetensors and state.safetensors; a resume on any number of
processes (or none: one process without torchrun) loads them and shards them
again. Nothing is pickled either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)   # rank 0 gets it, on the CPU
LOAD = StateDictOptions(full_state_dict=True)                       # every rank holds it


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """Shard each block, then the rest (embeddings, final norm, head) as the root."""
    blocks: Any = getattr(model.transformer, "h")   # a ModuleList (nn.Module's __getattr__ is untyped)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective: every rank calls it); a tensor as it is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def _names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameter names of `optimizer`'s parameters, in its order (its state's indices)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def gather_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights by their plain names (a tied head once): on rank 0; {} elsewhere.
    Every rank must call it."""
    state = get_model_state_dict(model, options=GATHER)
    if getattr(model.config, "tie_embeddings", False):
        state.pop("lm_head.weight", None)
    return {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}


def gather_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state_dict, keyed by parameter index as an unsharded optimizer's
    is (engine.training.snapshot saves that form): on rank 0; {} elsewhere. Every rank
    must call it."""
    full: Any = get_optimizer_state_dict(model, optimizer, options=GATHER)
    if not full:
        return {}
    names = _names(model, optimizer)
    state = {i: full["state"][name] for i, name in enumerate(names) if name in full["state"]}
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def load_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full weights (every rank read them) into the sharded model."""
    weights = dict(weights)
    if getattr(model.config, "tie_embeddings", False) and "transformer.wte.weight" in weights:
        weights.setdefault("lm_head.weight", weights["transformer.wte.weight"])
    set_model_state_dict(model, dict[str, Any](weights), options=LOAD)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """A full, index-keyed optimizer state_dict (checked by engine.training.snapshot) into
    the sharded optimizer."""
    names = _names(model, optimizer)
    by_name = {names[i]: values for i, values in state["state"].items()}
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]]
    set_optimizer_state_dict(model, optimizer, {"state": by_name, "param_groups": groups}, options=LOAD)
