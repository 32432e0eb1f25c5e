"""A run's record read back: metrics.jsonl as typed events, whole or followed live.

The app reads a run's history to draw its curves across every resumed segment,
and follows the file of a run that another process is training (headless, under
nohup or torchrun) to draw it live, at no cost to that training: it only reads
the lines appended since the last look.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from llmtui.engine.training.events import DoneEvent, EvalEvent, Event, StartEvent, TrainEvent, event_from_json


def parse_line(line: bytes | str) -> Event | None:
    """The event of one metrics line; None for a line that is not one (torn, foreign)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event_from_json(record)


class MetricsFollower:
    """Reads the complete lines added to a metrics.jsonl since the previous poll.

    A resume cuts the record back to its checkpoint by replacing the file; a
    follower notices (another inode, or a shorter file), starts over from the
    first line, and says so (`reset`), so its reader can drop what it drew."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._inode: int | None = None

    def poll(self) -> tuple[list[Event], bool]:
        """(new events, whether the file was replaced and is read from the start)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return [], False
        reset = self._inode is not None and (stat.st_ino != self._inode or stat.st_size < self._offset)
        if reset:
            self._offset = 0
        self._inode = stat.st_ino
        if stat.st_size <= self._offset:
            return [], reset
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(stat.st_size - self._offset)
        except OSError:
            return [], reset
        end = data.rfind(b"\n")
        if end < 0:
            return [], reset         # only a line still being written
        self._offset += end + 1
        events = [e for line in data[:end + 1].splitlines() if line and (e := parse_line(line))]
        return events, reset


@dataclass
class RunHistory:
    """The curves of a run, from its record: every segment, resumed or not."""

    train: list[tuple[int, float]] = field(default_factory=list)           # (step, loss)
    val: list[tuple[int, float]] = field(default_factory=list)             # (step, val_loss)
    lr: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_sec: list[tuple[int, float]] = field(default_factory=list)
    starts: list[StartEvent] = field(default_factory=list)                 # one per segment
    done: DoneEvent | None = None

    def add(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, TrainEvent):
                self.train.append((e.step, e.loss))
                self.lr.append((e.step, e.lr))
                self.tokens_per_sec.append((e.step, e.tokens_per_sec))
            elif isinstance(e, EvalEvent):
                self.val.append((e.step, e.val_loss))
            elif isinstance(e, StartEvent):
                # a segment resumed at step N continues the curve from N: anything the
                # record kept after N belonged to steps that were lost
                self._cut_after(e.start_step)
                self.starts.append(e)
            elif isinstance(e, DoneEvent):
                self.done = e

    def _cut_after(self, step: int) -> None:
        for points in (self.train, self.val, self.lr, self.tokens_per_sec):
            while points and points[-1][0] > step:
                points.pop()

    @property
    def last_step(self) -> int:
        return max((points[-1][0] for points in (self.train, self.val) if points), default=0)


TAIL_BYTES = 64 * 1024   # a few hundred lines: the newest train event is among them


def progress(path: Path) -> tuple[int, int | None] | None:
    """(newest step, tokens seen at the newest train event) of a metrics.jsonl, from
    its last TAIL_BYTES only (a listing reads this for every running run); None
    when no complete line there is an event."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    lines = data.split(b"\n")[1 if size > TAIL_BYTES else 0:-1]   # whole lines only
    step, tokens = None, None
    for line in reversed(lines):
        event = parse_line(line) if line.strip() else None
        if event is None:
            continue
        if step is None:
            step = event.step
        if isinstance(event, TrainEvent):
            tokens = event.tokens_seen
            break
    return None if step is None else (step, tokens)


def read_history(run_dir: Path) -> RunHistory:
    """Everything a run's metrics.jsonl records, as curves."""
    history = RunHistory()
    events, _ = MetricsFollower(run_dir / "metrics.jsonl").poll()
    history.add(events)
    return history
