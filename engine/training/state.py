"""The run's state, as a checkpoint's state.json records it.

`RunState` is the run's mutable progress (step, counters, losses); `SavedState`
is everything a checkpoint's state.json holds: the RunState plus the batch
samplers' positions, the optimizer's hyperparameters, RNG streams, the
GradScaler and the fingerprints that decide whether a config may resume it.
Saving and loading are one symmetric pair (`to_json` / `from_json`), and
`from_json` is the one schema of the file: every key is required on load and
checked for its type and range (finite numbers, counts no run can exceed, the
optimizer's hyperparameters, generator states of the right size), and
`parse_json` refuses nesting deeper than llmtui writes before `json` parses it
(it recurses). A damaged, edited or crafted state.json is a one-line
CheckpointError naming the file and the key, never a crash or a wrong resume
later.

No torch here: run listings read state.json without loading it.
engine.training.snapshot turns live objects into checkpoint files and back.
"""

from __future__ import annotations

import json
import math
import re
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
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = _required(d, f.name, source)
            if f.name in ("train_loss", "val_loss", "best_val_loss"):
                values[f.name] = _loss(value, f.name, source)
            elif f.name == "training_time":
                values[f.name] = _seconds(value, f.name, source)
            elif f.name in ("step", "max_steps", "bad_evals"):
                values[f.name] = _count(value, f.name, source, MAX_STEPS)
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
        """The state in `d` (state.json parsed by `parse_json`), every value checked."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: not a llmtui training state (expected a JSON object)")
        d = _migrate(d, source)
        known = ({f.name for f in fields(RunState)} | {f.name for f in fields(cls)}
                 | {"sampler", "state_version"})
        _no_unknown(d, known, "", source)
        run = RunState.from_json(d, source)
        samplers = _required(d, "samplers", source)
        if not isinstance(samplers, list) or not samplers:
            raise CheckpointError(f"{source}: \"samplers\" must be a non-empty list of sampler states")
        for i, sampler in enumerate(samplers):
            _sampler(sampler, f"samplers[{i}]", source)
        if _required(d, "sampler", source) != samplers[0]:   # rank 0's, repeated for 0.1.0
            raise CheckpointError(f"{source}: \"sampler\" is not the same as \"samplers[0]\"; the "
                                  "training state is damaged")
        world_size = _count(_required(d, "world_size", source), "world_size", source, MAX_WORLD_SIZE, 1)
        if world_size != len(samplers):
            raise CheckpointError(f"{source}: \"world_size\" = {world_size} but {len(samplers)} sampler "
                                  "state(s) are saved (one per process); the training state is damaged")
        compat, optimizer, rng = (_object(_required(d, k, source), k, source)
                                  for k in ("compat", "optimizer", "rng"))
        for key in ("model", "tokenizer", "data"):
            _required(compat, key, source, "compat.")
        _optimizer(optimizer, "optimizer", source, muon_allowed=True)
        _rng(rng, source)
        scaler = _required(d, "scaler", source)
        if scaler is not None:
            _scaler(_object(scaler, "scaler", source), source)
        stamp = _number(_required(d, "time", source), "time", source, 0.0, 1e12)
        return cls(run=run, samplers=samplers, world_size=world_size, compat=compat,
                   time=stamp, optimizer=optimizer, rng=rng, scaler=scaler)


def read_state(text: str, source: str) -> SavedState:
    """A state.json's text, parsed and checked: how every load reads the file."""
    return SavedState.from_json(parse_json(text, source), source)


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


# ---------------------------------------------------------------------------
# the schema's limits

# JSON that llmtui writes nests at most 4 levels (optimizer.muon.param_groups[i].betas; a
# trained tokenizer's embedded tokenizer.json a few more): deeper input is crafted, and
# json.loads recurses once per level, so such input is refused before it is parsed
MAX_JSON_DEPTH = 32
# more optimizer steps than any run takes (30 years at 1,000 steps per second): a larger
# "step" is damage, not a finished run
MAX_STEPS = 10**12
# other counters (tokens seen, batches drawn, seeds) are int64 in torch and NumPy
MAX_COUNT = 2**63 - 1
MAX_WORLD_SIZE = 65536          # processes of one torchrun job
# learning rates as the config allows them (engine/config/schema.py: at most 10); the
# optimizer's other hyperparameters in the ranges torch accepts
_GROUP_RANGES = {"lr": (0.0, 10.0), "initial_lr": (0.0, 10.0), "weight_decay": (0.0, 10.0),
                 "eps": (0.0, 1.0), "momentum": (0.0, 1.0)}

_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*+"|([\[{])|[\]}]')


def parse_json(text: str, source: str) -> Any:
    """`text` as JSON, refused as a damaged checkpoint file when it is not JSON or nests
    deeper than MAX_JSON_DEPTH (counted first: strings skipped, brackets counted)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        if token.group(1):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise CheckpointError(f"{source}: nested more than {MAX_JSON_DEPTH} levels deep; not a "
                                      "file llmtui wrote (damaged or crafted)")
        elif len(token.group()) == 1:
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{source}: not valid JSON ({exc}); llmtui never unpickles "
                              "checkpoint state") from None


# ---------------------------------------------------------------------------
# value checks: each raises CheckpointError naming the file and the key

def _seconds(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:
        raise CheckpointError(f"{source}: \"{key}\" = {value!r} is not allowed; expected a "
                              "number of seconds >= 0")
    return float(value)


def _required(d: dict, key: str, source: str, prefix: str = "") -> Any:
    if key not in d:
        raise CheckpointError(f"{source}: \"{prefix}{key}\" is missing; the training state is incomplete")
    return d[key]


def _no_unknown(d: dict, known: set[str], prefix: str, source: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{source}: unknown key \"{prefix}{unknown[0]}\"; the training state "
                              "was written by another program or edited")


def _count(value: Any, key: str, source: str, most: int = MAX_COUNT, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise CheckpointError(f"{source}: \"{key}\" = {_show(value)} is not allowed; expected an "
                              f"integer >= {least} and <= {most:,}")
    return value


def _number(value: Any, key: str, source: str, low: float, high: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise CheckpointError(f"{source}: \"{key}\" = {_show(value)} is not allowed; expected a "
                              f"number >= {low:g} and <= {high:g}")
    return float(value)


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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _decimal(value: Any, key: str, source: str, bits: int) -> None:
    """A large unsigned integer written as a decimal string (PCG64's 128-bit words)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit()
            and len(value) <= 40 and int(value) < 2**bits):
        raise CheckpointError(f"{source}: \"{key}\" = {_show(value)} is not allowed; expected "
                              f"an unsigned {bits}-bit integer written as a decimal string")


def _words(value: Any, key: str, source: str, length: int) -> None:
    """A generator's state words: `length` integers of 32 bits."""
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(w, int) and not isinstance(w, bool) and 0 <= w < 2**32 for w in value)):
        raise CheckpointError(f"{source}: \"{key}\" must be a list of {length} unsigned 32-bit integers")


_SAMPLER_KEYS = {"bit_generator", "state", "inc", "has_uint32", "uinteger", "batches_drawn", "seed",
                 "n_tokens", "block_size", "batch_size"}


_EPOCH_SAMPLER_KEYS = {"kind", "epoch", "index", "batches_drawn", "seed", "rank", "world_size",
                       "n_tokens", "block_size", "batch_size"}


def _sampler(value: Any, key: str, source: str) -> None:
    """One batch sampler's position (engine.data.batches: BatchSampler.state_dict, or
    EpochSampler.state_dict with "kind" = "epochs")."""
    d = _object(value, key, source)
    if "kind" in d:
        if d["kind"] != "epochs":
            raise CheckpointError(f"{source}: \"{key}.kind\" = {_show(d['kind'])} is not allowed; "
                                  "expected \"epochs\"")
        for name in sorted(_EPOCH_SAMPLER_KEYS):
            _required(d, name, source, f"{key}.")
        _no_unknown(d, _EPOCH_SAMPLER_KEYS | {"offsets"}, f"{key}.", source)   # offsets: absent before them
        if not isinstance(d.get("offsets", False), bool):
            raise CheckpointError(f"{source}: \"{key}.offsets\" = {_show(d['offsets'])} must be "
                                  "true or false")
        for name in ("epoch", "index", "batches_drawn", "seed", "rank", "n_tokens"):
            _count(d[name], f"{key}.{name}", source)
        for name in ("world_size", "block_size", "batch_size"):
            _count(d[name], f"{key}.{name}", source, least=1)
        return
    for name in sorted(_SAMPLER_KEYS):
        _required(d, name, source, f"{key}.")
    _no_unknown(d, _SAMPLER_KEYS, f"{key}.", source)
    if d["bit_generator"] != "PCG64":
        raise CheckpointError(f"{source}: \"{key}.bit_generator\" = {_show(d['bit_generator'])} is not "
                              "allowed; expected \"PCG64\"")
    _decimal(d["state"], f"{key}.state", source, 128)
    _decimal(d["inc"], f"{key}.inc", source, 128)
    _count(d["has_uint32"], f"{key}.has_uint32", source, 1)
    _count(d["uinteger"], f"{key}.uinteger", source, 2**32 - 1)
    for name in ("batches_drawn", "seed", "n_tokens"):
        _count(d[name], f"{key}.{name}", source)
    for name in ("block_size", "batch_size"):
        _count(d[name], f"{key}.{name}", source, least=1)


def _optimizer(d: dict, key: str, source: str, muon_allowed: bool = False) -> None:
    """An optimizer's "param_groups" and "scalars" (engine.training.snapshot.optimizer_to_files);
    Muon's beside AdamW's under "muon"."""
    _no_unknown(d, {"param_groups", "scalars"} | ({"muon"} if muon_allowed else set()), f"{key}.", source)
    groups = _required(d, "param_groups", source, f"{key}.")
    if not isinstance(groups, list) or not groups:
        raise CheckpointError(f"{source}: \"{key}.param_groups\" must be a non-empty list")
    for i, group in enumerate(groups):
        _param_group(group, f"{key}.param_groups[{i}]", source)
    scalars = _object(d.get("scalars", {}), f"{key}.scalars", source)
    for index, values in scalars.items():
        where = f"{key}.scalars.{index}"
        if not index.isascii() or not index.isdigit():
            raise CheckpointError(f"{source}: \"{where}\" names no parameter")
        for name, value in _object(values, where, source).items():
            if value is not None and not isinstance(value, bool):
                _number(value, f"{where}.{name}", source, -MAX_COUNT, MAX_COUNT)
    if "muon" in d:
        _optimizer(_object(d["muon"], f"{key}.muon", source), f"{key}.muon", source)


def _param_group(value: Any, key: str, source: str) -> None:
    """One torch param group: parameter indices, and hyperparameters that are finite numbers
    in their range, flags, names, or short lists of finite numbers (betas, Muon's
    Newton-Schulz coefficients)."""
    group = _object(value, key, source)
    params = _required(group, "params", source, f"{key}.")
    if (not isinstance(params, list) or not params or len(set(map(repr, params))) != len(params)
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 2**31 for p in params)):
        raise CheckpointError(f"{source}: \"{key}.params\" must be a list of distinct parameter indices")
    _required(group, "lr", source, f"{key}.")
    for name, v in group.items():
        where = f"{key}.{name}"
        if name == "params":
            continue
        if name == "betas":
            if not isinstance(v, list) or len(v) != 2:
                raise CheckpointError(f"{source}: \"{where}\" = {_show(v)} is not allowed; expected "
                                      "two numbers >= 0 and < 1")
            for j, beta in enumerate(v):
                if _number(beta, f"{where}[{j}]", source, 0.0, 1.0) == 1.0:
                    raise CheckpointError(f"{source}: \"{where}[{j}]\" = 1 is not allowed; expected "
                                          "a number >= 0 and < 1")
        elif name in _GROUP_RANGES:
            _number(v, where, source, *_GROUP_RANGES[name])
        elif v is None or isinstance(v, bool):
            continue
        elif isinstance(v, str):
            if len(v) > 100:
                raise CheckpointError(f"{source}: \"{where}\" is a string of {len(v):,} characters; "
                                      "expected a name")
        elif isinstance(v, list):
            if len(v) > 16:
                raise CheckpointError(f"{source}: \"{where}\" holds {len(v):,} values; expected a "
                                      "few numbers")
            for j, item in enumerate(v):
                _number(item, f"{where}[{j}]", source, -1e6, 1e6)
        else:
            _number(v, where, source, -1e6, 1e6)


def _rng(rng: dict, source: str) -> None:
    """Python's and NumPy's Mersenne Twister states (engine.training.snapshot.rng_to_files)."""
    _no_unknown(rng, {"python", "numpy"}, "rng.", source)
    python = _required(rng, "python", source, "rng.")
    if not isinstance(python, list) or len(python) != 3:
        raise CheckpointError(f"{source}: \"rng.python\" must be [version, state words, gauss]")
    _count(python[0], "rng.python[0]", source, 3, 3)
    _words(python[1], "rng.python[1]", source, 625)
    if python[1][-1] > 624:
        raise CheckpointError(f"{source}: \"rng.python[1]\" ends in position {python[1][-1]}; "
                              "expected <= 624")
    if python[2] is not None:
        _number(python[2], "rng.python[2]", source, -1e308, 1e308)
    numpy = _required(rng, "numpy", source, "rng.")
    if not isinstance(numpy, list) or len(numpy) != 5 or numpy[0] != "MT19937":
        raise CheckpointError(f"{source}: \"rng.numpy\" must be [\"MT19937\", state words, position, "
                              "has_gauss, cached_gaussian]")
    _words(numpy[1], "rng.numpy[1]", source, 624)
    _count(numpy[2], "rng.numpy[2]", source, 624)
    _count(numpy[3], "rng.numpy[3]", source, 1)
    _number(numpy[4], "rng.numpy[4]", source, -1e308, 1e308)


_SCALER_RANGES = {"scale": (0.0, 3.4e38), "growth_factor": (1.0, 1e6), "backoff_factor": (0.0, 1.0),
                  "growth_interval": (1, 10**9), "_growth_tracker": (0, 10**9)}


def _scaler(scaler: dict, source: str) -> None:
    """torch.amp.GradScaler.state_dict(): a positive finite scale and its update rules."""
    _no_unknown(scaler, set(_SCALER_RANGES), "scaler.", source)
    for name, (low, high) in _SCALER_RANGES.items():
        value = _required(scaler, name, source, "scaler.")
        if isinstance(low, int):
            _count(value, f"scaler.{name}", source, int(high), low)
        else:
            _number(value, f"scaler.{name}", source, low, high)
