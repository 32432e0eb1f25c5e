"""The run's state, as a checkpoint's state.json records it.

`RunState` is the run's mutable progress (step, counters, losses); `SavedState`
is everything a checkpoint's state.json holds: the RunState plus the batch
samplers' positions, the optimizer's hyperparameters, RNG streams, the
GradScaler and the fingerprints that decide whether a config may resume it.
Saving and loading are one symmetric pair (`to_json` / `from_json`): every
key is required on load and checked for its type, so a damaged or edited
state.json is a one-line refusal, never a crash later.

No torch here: run listings read state.json without loading it.
engine.training.snapshot turns live objects into checkpoint files and back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmtui.engine.errors import CheckpointError


@dataclass
class RunState:
    """How far the run got: the part of the trainer a checkpoint saves and restores."""

    step: int = 0                         # optimizer steps done
    max_steps: int = 0                    # the run's length when this was saved
    tokens_seen: int = 0
    train_loss: float | None = None       # the last logged train loss
    val_loss: float | None = None         # the last val loss
    best_val_loss: float | None = None
    bad_evals: int = 0                    # evaluations without improvement (early stopping)
    training_time: float = 0.0            # seconds trained over all segments (pauses excluded)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str) -> "RunState":
        values = {}
        for f in fields(cls):
            value = _required(d, f.name, source)
            if f.name in ("train_loss", "val_loss", "best_val_loss"):
                values[f.name] = _loss(value, f.name, source)
            elif f.name == "training_time":
                values[f.name] = _seconds(value, f.name, source)
            else:
                values[f.name] = _count(value, f.name, source)
        state = cls(**values)
        if state.step > state.max_steps:
            raise CheckpointError(f"{source}: \"step\" = {state.step} is past \"max_steps\" = "
                                  f"{state.max_steps}; the training state is damaged")
        return state


@dataclass
class SavedState:
    """Everything in a checkpoint's state.json, in its key order."""

    run: RunState
    samplers: list[dict[str, Any]]        # one batch-sampler position per process
    world_size: int
    compat: dict[str, Any]                # model shape, tokenizer and data fingerprints
    time: float
    optimizer: dict[str, Any]             # param_groups and non-tensor per-parameter values
    rng: dict[str, Any]                   # Python and NumPy generator states
    scaler: dict[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        # "sampler" repeats rank 0's position: the key 0.1.0 read
        return {"state_version": STATE_VERSION, **self.run.to_json(), "sampler": self.samplers[0],
                "samplers": self.samplers, "world_size": self.world_size, "compat": self.compat,
                "time": self.time, "optimizer": self.optimizer, "rng": self.rng, "scaler": self.scaler}

    @classmethod
    def from_json(cls, d: Any, source: str) -> "SavedState":
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: not a llmtui training state (expected a JSON object)")
        d = _migrate(d, source)
        known = ({f.name for f in fields(RunState)} | {f.name for f in fields(cls)}
                 | {"sampler", "state_version"})
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown key \"{unknown[0]}\"; the training state "
                                  "was written by another program or edited")
        run = RunState.from_json(d, source)
        samplers = _required(d, "samplers", source)
        if not isinstance(samplers, list) or not samplers or not all(isinstance(s, dict) for s in samplers):
            raise CheckpointError(f"{source}: \"samplers\" must be a non-empty list of sampler states")
        world_size = _count(_required(d, "world_size", source), "world_size", source)
        compat, optimizer, rng = (_object(_required(d, k, source), k, source)
                                  for k in ("compat", "optimizer", "rng"))
        scaler = _required(d, "scaler", source)
        if scaler is not None:
            scaler = _object(scaler, "scaler", source)
        stamp = _required(d, "time", source)
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            raise CheckpointError(f"{source}: \"time\" must be a number")
        return cls(run=run, samplers=samplers, world_size=world_size, compat=compat,
                   time=float(stamp), optimizer=optimizer, rng=rng, scaler=scaler)


STATE_VERSION = 2


def _migrate(d: dict, source: str) -> dict:
    """A state.json of an older llmtui, in this version's shape. Version 1 (0.1.0, no
    "state_version") did not count training time across segments: it starts at 0."""
    version = d.get("state_version", 1)
    if version == 1:
        return {**d, "state_version": STATE_VERSION, "training_time": 0.0}
    if version != STATE_VERSION:
        raise CheckpointError(f"{source}: \"state_version\" = {version!r} is not supported (this "
                              f"llmtui reads versions 1 and {STATE_VERSION})")
    return d


def _seconds(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:
        raise CheckpointError(f"{source}: \"{key}\" = {value!r} is not allowed; expected a "
                              "number of seconds >= 0")
    return float(value)


def _required(d: dict, key: str, source: str) -> Any:
    if key not in d:
        raise CheckpointError(f"{source}: \"{key}\" is missing; the training state is incomplete")
    return d[key]


def _count(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{source}: \"{key}\" = {value!r} is not allowed; expected an "
                              "integer >= 0")
    return value


def _loss(value: Any, key: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"{source}: \"{key}\" = {value!r} is not allowed; expected a "
                              "finite number or null")
    return float(value)


def _object(value: Any, key: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: \"{key}\" must be a JSON object")
    return value
