"""What the trainer tells its front ends, and how they listen.

An event is a plain dict with at least `kind`, `step` and `time` (Unix
seconds), exactly the object written as one line of metrics.jsonl. Kinds:

  start       run directory, device, precision, parameter counts, totals
  prepare     data preparation progress (stage, done, total)
  train       loss, lr, grad_norm, tokens_per_sec, ms_per_step, mfu, memory
  eval        val_loss, val_perplexity, val_accuracy, best_val_loss
  sample      generated text
  checkpoint  path, reason (last, best, step, manual)
  early_stop  why training stopped early
  warning     message
  paused / resumed
  done        the summary (same content as train_log.json)
  error       message

Front ends either subscribe (callbacks run on the training thread, so they
must be quick) or poll an EventBuffer from their own thread.
"""

from __future__ import annotations

import collections
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from llmtui.engine import fsutil
from llmtui.engine.errors import CheckpointError

Event = dict[str, Any]
Listener = Callable[[Event], None]


def make_event(kind: str, step: int, **fields: Any) -> Event:
    return {"kind": kind, "step": step, "time": time.time(), **fields}


class EventBuffer:
    """A bounded, thread-safe log of events that a UI polls on its own timer.

    Each event gets a sequence number; `since(seq)` returns what came after,
    so a slow reader never blocks the trainer and only misses events when it
    falls more than `maxlen` behind.
    """

    def __init__(self, maxlen: int = 10000):
        self._events: collections.deque[tuple[int, Event]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, event))

    def since(self, seq: int) -> tuple[int, list[Event]]:
        with self._lock:
            # sequence numbers are consecutive: the new events are the last ones
            count = min(len(self._events), max(0, self._seq - seq))
            new = [e for _, e in itertools.islice(self._events, len(self._events) - count, None)]
            return self._seq, new


class JsonlWriter:
    """Appends each event as one JSON line and flushes it, so a crash or a
    `tail -f` never sees half a record."""

    def __init__(self, path: Path, append: bool = False):
        self.path = path
        self._file = open(path, "a" if append else "w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if event["kind"] == "prepare":
            return  # progress ticks are for screens, not the metrics record
        self._file.write(json.dumps(event, default=_jsonable) + "\n")
        self._file.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step` (lost by a crash, redone by a resume)
        and any half-written last line."""
        self._file.close()
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn by a kill mid-write
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        try:
            fsutil.atomic_write(self.path, "".join(kept).encode("utf-8"))
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        finally:
            self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
