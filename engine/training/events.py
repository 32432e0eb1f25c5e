"""What the trainer tells its front ends: one frozen dataclass per event kind.

An event's JSON form is exactly one line of a run's metrics.jsonl:
`{"kind": ..., "step": ..., "time": ..., <the fields in declaration order>}`.
That byte layout is a contract (scripts and `llmtui runs` read it); a field
marked `optional` is left out while it holds its default, as the memory
figures of the other device kind are.

Front ends either subscribe (a listener runs on the training thread, so it
must be quick) or poll an EventBuffer from their own thread, and match on the
classes, never on strings.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, ClassVar

from llmtui.engine import fsutil


def optional(default: Any = None) -> Any:
    """A field written to JSON only when it differs from its default."""
    return field(default=default, metadata={"optional": True})


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    step: int
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("optional") and value == f.default:
                continue
            out[f.name] = value
        return out

    def to_line(self) -> str:
        return json.dumps(self.to_json(), default=_jsonable)


@dataclass(frozen=True, kw_only=True)
class StartEvent(Event):
    """Setup is done; the first step comes next."""
    kind: ClassVar[str] = "start"
    run_dir: str
    device: str
    precision: str
    threads: int | None
    n_params: int
    n_params_non_embedding: int
    vocab_size: int
    max_steps: int
    tokens_per_step: int
    effective_batch: int
    world_size: int
    train_tokens: int
    val_tokens: int
    data_dir: str
    data_reused: bool
    resumed_from: str | None
    start_step: int
    # matmul FLOPs of the optimizer per step (Muon's Newton-Schulz iterations), apart from
    # the model's FLOPs that `mfu` counts
    optimizer_flops_per_step: int = optional(0)
    cpu_cores: int | None = optional()    # the logical CPUs train events' cpu_busy is out of
    # torchrun --max-restarts: how many times torchrun restarted the processes before
    # this start (TORCHELASTIC_RESTART_COUNT); a restarted group resumes its run
    restart: int = optional(0)


@dataclass(frozen=True, kw_only=True)
class PrepareEvent(Event):
    """Data preparation progress (for screens; never written to metrics.jsonl)."""
    kind: ClassVar[str] = "prepare"
    stage: str
    done: int
    total: int


@dataclass(frozen=True, kw_only=True)
class TrainEvent(Event):
    """Training figures, averaged over the steps since the previous one."""
    kind: ClassVar[str] = "train"
    loss: float
    lr: float
    grad_norm: float | None
    tokens_per_sec: float
    ms_per_step: float
    mfu: float
    tokens_seen: int
    max_steps: int
    memory_allocated_mb: float | None = optional()   # CUDA
    memory_peak_mb: float | None = optional()        # CUDA
    memory_rss_mb: float | None = optional()         # CPU
    epoch: float | None = optional()                 # epochs done, with training.epochs
    # the machine's CPU cores busy over the interval: all processes, and the other processes
    cpu_busy: float | None = optional()
    cpu_others: float | None = optional()


@dataclass(frozen=True, kw_only=True)
class EvalProgressEvent(Event):
    """How far an evaluation got (for screens; never written to metrics.jsonl)."""
    kind: ClassVar[str] = "eval_progress"
    done: int
    total: int


@dataclass(frozen=True, kw_only=True)
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    val_loss: float
    val_perplexity: float
    val_accuracy: float
    best_val_loss: float | None
    improved: bool
    evals_without_improvement: int
    epoch: float | None = optional()                 # epochs done, with training.epochs


@dataclass(frozen=True, kw_only=True)
class EpochEvent(Event):
    """An epoch ended (training.epochs > 0): the mean train loss over its steps and the
    val loss evaluated at its end."""
    kind: ClassVar[str] = "epoch"
    epoch: int                 # 1-based: the epoch that ended
    epochs: float              # training.epochs
    train_loss: float | None
    val_loss: float | None


@dataclass(frozen=True, kw_only=True)
class SampleEvent(Event):
    kind: ClassVar[str] = "sample"
    text: str
    prompt: str


class SaveReason(StrEnum):
    """Why a checkpoint was written, and so where: `last` (the end, a stop, a signal),
    `best` (a new best val loss), `step` (checkpoint.every_n_steps: step_N, and last),
    `epoch` (checkpoint.every_n_epochs: epoch_N, and last), `manual` (Save now: last)."""
    LAST = "last"
    BEST = "best"
    STEP = "step"
    EPOCH = "epoch"
    MANUAL = "manual"


@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    path: str
    reason: SaveReason     # written as its word: "last", "best", "step", "epoch", "manual"


@dataclass(frozen=True, kw_only=True)
class EarlyStopEvent(Event):
    kind: ClassVar[str] = "early_stop"
    reason: str
    best_val_loss: float | None


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True, kw_only=True)
class PausedEvent(Event):
    kind: ClassVar[str] = "paused"


@dataclass(frozen=True, kw_only=True)
class UnpausedEvent(Event):
    # training goes on after a pause; "resumed" (what llmtui wrote before) means a restart
    # from a checkpoint everywhere else, so old records are read under the new name
    kind: ClassVar[str] = "unpaused"


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    kind: ClassVar[str] = "error"
    message: str
    nonfinite_step: int | None = optional()   # the first step whose loss was not finite
    raised: bool = optional(False)            # run() also raises it (front ends report it once)


@dataclass(frozen=True, kw_only=True)
class DoneEvent(Event):
    """The run's summary: the same content as train_log.json."""
    kind: ClassVar[str] = "done"
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    training_time: float
    steps: int
    tokens_seen: int
    stop_reason: str
    run_dir: str
    last_checkpoint: str | None
    best_checkpoint: str | None
    metrics_path: str
    n_params: int
    device: str
    precision: str
    total_training_time: float | None = optional()   # all segments, when this one resumed a run
    epoch: float | None = optional()                 # epochs done, with training.epochs


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (
    StartEvent, PrepareEvent, TrainEvent, EvalProgressEvent, EvalEvent, EpochEvent, SampleEvent,
    CheckpointEvent, EarlyStopEvent, WarningEvent, PausedEvent, UnpausedEvent, ErrorEvent, DoneEvent)}


# kinds earlier versions wrote, and what they are called now
OLD_KINDS = {"resumed": "unpaused"}

_FIELD_NAMES = {cls: frozenset(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()}


def event_from_json(record: dict[str, Any]) -> Event | None:
    """The event a metrics.jsonl object records; None for a kind or shape this
    version does not know (lines from a newer llmtui are skipped, not fatal).
    Keys this version does not know are ignored."""
    kind = record.get("kind") if isinstance(record, dict) else None
    cls = EVENT_TYPES.get(OLD_KINDS.get(kind, kind)) if isinstance(kind, str) else None
    if cls is None:
        return None
    fields = dict(record)
    del fields["kind"]
    names = _FIELD_NAMES[cls]
    if not fields.keys() <= names:   # written by a newer llmtui: keep what this one knows
        fields = {k: v for k, v in fields.items() if k in names}
    try:
        return cls(**fields)
    except TypeError:  # a required field is missing
        return None


Listener = Callable[[Event], None]


class EventBuffer:
    """A bounded, thread-safe log of events that a UI polls on its own timer.

    Each event gets a sequence number; `since(seq)` returns what came after,
    so a slow reader never blocks the trainer and only misses events when it
    falls more than `maxlen` behind.
    """

    def __init__(self, maxlen: int = 10000):
        self._events: collections.deque[tuple[int, Any]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, event: Any) -> None:
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, event))

    def since(self, seq: int) -> tuple[int, list[Any]]:
        with self._lock:
            # sequence numbers are consecutive: the new events are the last ones
            count = min(len(self._events), max(0, self._seq - seq))
            new = [e for _, e in itertools.islice(self._events, len(self._events) - count, None)]
            return self._seq, new


class JsonlWriter:
    """Appends each event as one JSON line and flushes it, so a crash or a
    `tail -f` never sees half a record. A write that fails (a full disk) is not
    raised into whoever emitted the event: the writer stops writing and keeps the
    error in `error`, which the trainer checks between steps to save what it can."""

    def __init__(self, path: Path, append: bool = False):
        self.path = path
        self.error: str | None = None
        self._file = open(path, "a" if append else "w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if isinstance(event, (PrepareEvent, EvalProgressEvent)) or self.error is not None:
            return  # progress ticks are for screens, not the metrics record
        try:
            self._file.write(event.to_line() + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = f"{self.path}: cannot write ({exc.strerror or exc})"

    def truncate_after(self, step: int) -> int:
        """Drop records of steps after `step` (lost by a crash, redone by a resume)
        and lines that are not whole JSON records (torn by a kill mid-write, or
        damaged); returns how many damaged lines were dropped."""
        self._file.close()
        kept, damaged = [], 0
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        record = json.loads(raw.decode("utf-8")) if raw.endswith(b"\n") else None
                    except (ValueError, RecursionError):
                        record = None
                    if not isinstance(record, dict):
                        damaged += raw.strip() != b""
                        continue
                    recorded = record.get("step", 0)
                    if isinstance(recorded, (int, float)) and recorded <= step:
                        kept.append(raw)
            fsutil.atomic_write(self.path, b"".join(kept))
        finally:
            self._file = open(self.path, "a", encoding="utf-8")
        return damaged

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or f"{self.path}: cannot write ({exc.strerror or exc})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
