"""Live training objects <-> checkpoint files.

Tensors (weights, optimizer moments, torch RNG bytes) go to safetensors;
everything else (engine.training.state.SavedState) to JSON. Neither format
unpickles anything on load, and everything loaded is checked against the
model and optimizer it is loaded into before any kernel sees it.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from safetensors.torch import save as save_tensors

from llmtui.engine.errors import CheckpointError, ResumeMismatch
from llmtui.engine.model.optim import Optimizer, Optimizers, state_shape
from llmtui.engine.training.state import RunState, SavedState

if TYPE_CHECKING:
    from llmtui.engine.model.gpt import GPT


def clean_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights by their plain names: no `_orig_mod.` from torch.compile or
    `module.` from DDP, and a tied head stored once (safetensors refuses
    shared storage)."""
    state = {}
    seen: dict[int, str] = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("_orig_mod.", "").removeprefix("module.")
        key = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        if key in seen:
            continue  # tied weight: already stored under its first name
        seen[key] = name
        state[name] = tensor.detach().to("cpu").contiguous()
    return state


def unwrap(model: torch.nn.Module) -> GPT:
    """The GPT inside torch.compile and DDP wrappers."""
    while hasattr(model, "_orig_mod") or hasattr(model, "module"):
        model = getattr(model, "_orig_mod", None) or getattr(model, "module")
    return cast("GPT", model)


def check_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights that do not fit `model`: names, shapes and dtypes. `model` may be on
    the meta device, so a checkpoint is checked against its config before anything is
    allocated for it."""
    target = unwrap(model)
    expected = target.state_dict()
    tied = {"lm_head.weight"} if target.config.tie_embeddings else set()
    missing = sorted(set(expected) - set(weights) - tied)
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        names = ", ".join(missing + unexpected)[:200]
        raise CheckpointError(f"{source}: weights do not fit this model ({names})")
    for name, tensor in weights.items():
        want = expected[name]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise CheckpointError(f"{source}: weight {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                                  f"the model needs {tuple(want.shape)} {want.dtype}")


def load_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    check_model_state(model, weights, source)
    unwrap(model).load_state_dict(weights, strict=False)


def optimizer_to_files(optimizer: Optimizer, prefix: str = "optimizer"
                       ) -> tuple[dict[str, torch.Tensor], dict]:
    return state_dict_to_files(optimizer.state_dict(), prefix)


def state_dict_to_files(sd: dict, prefix: str = "optimizer") -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state_dict (keyed by parameter index) as tensors and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizers_to_files(optimizers: Optimizers) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and state.json's "optimizer" object of the run's optimizers: AdamW/Adam
    as 0.1.0 saved it ("optimizer.*" tensors), Muon's beside it ("muon.*" tensors, and
    its param groups under "muon")."""
    tensors, meta = optimizer_to_files(optimizers.adam)
    if optimizers.muon is not None:
        muon_tensors, meta["muon"] = optimizer_to_files(optimizers.muon, "muon")
        tensors.update(muon_tensors)
    return tensors, meta


def optimizers_from_files(optimizers: Optimizers, tensors: dict[str, torch.Tensor], meta: dict,
                          source: str, load=None) -> None:
    """Load the run's optimizers from a checkpoint, every tensor checked first. `load(optimizer,
    state_dict)` puts a checked state into an optimizer (a sharded one: engine.training.sharded)."""
    saved_muon = meta.get("muon")
    if (saved_muon is not None) != (optimizers.muon is not None):
        trained, configured = ("muon", "adamw or adam") if saved_muon is not None else ("adamw or adam", "muon")
        raise ResumeMismatch(f"{source}: the checkpoint was trained with optimizer.name = {trained}, the "
                             f"config says {configured}; resume with the optimizer it was trained with")
    states: list[tuple[Optimizer, dict]] = [
        (optimizers.adam, optimizer_from_files(optimizers.adam, tensors, meta, source))]
    if optimizers.muon is not None:
        if not isinstance(saved_muon, dict):
            raise CheckpointError(f"{source}: optimizer \"muon\" must be a JSON object")
        states.append((optimizers.muon, optimizer_from_files(optimizers.muon, tensors, saved_muon, source,
                                                             prefix="muon")))
    for optimizer, state in states:   # all checked before any is loaded
        if load is None:
            optimizer.load_state_dict(state)
        else:
            load(optimizer, state)


def optimizer_from_files(optimizer: Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict, source: str, prefix: str = "optimizer") -> dict:
    """The optimizer state_dict saved in `tensors` and `meta`, checked against
    `optimizer`'s parameters: every saved tensor must have the parameter's shape
    (a moment of another shape reaches fused kernels unchecked and can crash them)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = meta.get("param_groups")
    if (not isinstance(groups, list) or len(groups) != len(optimizer.param_groups)
            or any(not isinstance(g, dict) or len(g.get("params", ())) != len(o["params"])
                   for g, o in zip(groups, optimizer.param_groups))):
        raise CheckpointError(f"{source}: optimizer parameter groups do not fit this model")
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, index, key = name.split(".", 2)
        if not index.isdigit() or int(index) >= len(params):
            raise CheckpointError(f"{source}: optimizer state {name} names no parameter of this model")
        param = params[int(index)]
        if key != "step" and (tuple(value.shape) != state_shape(key, param) or value.dtype != param.dtype):
            raise CheckpointError(f"{source}: optimizer state {name} is {tuple(value.shape)} "
                                  f"{value.dtype}, its parameter is {tuple(param.shape)} {param.dtype}"
                                  f" (the state should be {state_shape(key, param)})")
        if key == "step" and value.numel() != 1:
            raise CheckpointError(f"{source}: optimizer state {name} must hold one number")
        state.setdefault(int(index), {})[key] = value
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict):
        raise CheckpointError(f"{source}: optimizer \"scalars\" must be a JSON object")
    for index, values in scalars.items():
        if not str(index).isdigit() or int(index) >= len(params) or not isinstance(values, dict):
            raise CheckpointError(f"{source}: optimizer scalars for {index!r} name no parameter")
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": groups}


def rng_to_files() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)   # the legacy form (legacy=True, the default) of MT19937
    meta = {"python": [version, list(internal), gauss],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                      float(np_state[4])]}
    return tensors, meta


def rng_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        for i, s in enumerate(cuda_states[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def checkpoint_files(*, model, optimizers: Optimizers, scaler, run: RunState, samplers: list[dict],
                     world_size: int, compat: dict, time: float, config_toml: str,
                     tokenizer_json: dict, model_state: dict | None = None,
                     optimizer_files: tuple[dict[str, torch.Tensor], dict] | None = None,
                     extra_files: dict[str, Any] | None = None,
                     state_tensors: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """All files of one checkpoint as bytes, ready for an atomic write. A sharded run
    gives its gathered `model_state`, the optimizer's whole tensors and JSON as
    `optimizer_files`, and its sharded optimizer state as `extra_files`
    (engine.training.sharded); a run with a weight average gives the average as
    `model_state` and the trained weights as `state_tensors` (engine.training.weight_average)."""
    if optimizer_files is not None:
        opt_tensors, opt_meta = optimizer_files
    else:
        opt_tensors, opt_meta = optimizers_to_files(optimizers)
    rng_tensors, rng_meta = rng_to_files()
    saved = SavedState(run=run, samplers=samplers, world_size=world_size, compat=compat, time=time,
                       optimizer=opt_meta, rng=rng_meta, scaler=_scaler_state(scaler))
    return {
        "model.safetensors": save_tensors(model_state if model_state is not None else clean_model_state(model)),
        "state.safetensors": save_tensors({**opt_tensors, **rng_tensors, **(state_tensors or {})}),
        "state.json": json.dumps(saved.to_json(), indent=1).encode(),
        "config.toml": config_toml.encode(),
        "tokenizer.json": json.dumps(tokenizer_json).encode(),
        **(extra_files or {}),
    }


def _scaler_state(scaler) -> dict | None:
    if scaler is None or not scaler.is_enabled():
        return None
    return {k: (v.item() if torch.is_tensor(v) else v) for k, v in scaler.state_dict().items()}
