"""The time a run being trained has left, from its events (pure: no widgets).

    steps left x the recent time per step
    + evaluations left x what the last one cost (with its best checkpoint and sample)
    + what is left of the evaluation running now

The time per step is the steps-weighted mean of the train intervals of the last
WINDOW_SECONDS of training (at least the newest one), so a change of speed shows
within that time, not after several intervals as a median did. A train event's
ms_per_step leaves out evaluations and checkpoints; their cost is the wall time
between two train events around an evaluation, less pauses, less the interval's
own steps. Until one has been measured, evaluations count nothing.
"""

from __future__ import annotations

import collections
import math

from llmtui.engine.training.events import (
    DoneEvent,
    EvalEvent,
    EvalProgressEvent,
    Event,
    PausedEvent,
    SampleEvent,
    StartEvent,
    TrainEvent,
    UnpausedEvent,
)

WINDOW_SECONDS = 20.0


class Eta:
    def __init__(self, eval_cfg, max_steps: int):
        self.eval_cfg = eval_cfg            # the run's [eval]: interval, sample_tokens
        self.max_steps = max_steps
        self.eval_every: int | None = eval_cfg.every_n_steps if eval_cfg.every_n_epochs <= 0 else None
        self.eval_seconds: float | None = None   # the last evaluation block's cost
        self.step = 0
        self._intervals: collections.deque[tuple[float, int]] = collections.deque()   # (seconds, steps)
        self._prev: TrainEvent | None = None
        self._paused = 0.0                  # paused seconds since the previous train event
        self._paused_at: float | None = None
        self._evaluated = False             # an evaluation ran since the previous train event
        self._block: tuple[int, float] | None = None   # (step, start time) of the evaluation running
        self._block_done: set[str] = set()  # what of that block has come: eval, sample
        self._now = 0.0                     # the newest event's time

    # -- events -------------------------------------------------------------------

    def add(self, e: Event) -> None:
        self._now = max(self._now, e.time)
        match e:
            case StartEvent():
                self.max_steps = e.max_steps
                if self.eval_cfg.every_n_epochs > 0:   # as the trainer resolves it
                    per_epoch = max(1, math.ceil(e.train_tokens / max(1, e.tokens_per_step)))
                    self.eval_every = max(1, math.ceil(self.eval_cfg.every_n_epochs * per_epoch))
                self._prev = None            # setup time is no interval
            case TrainEvent():
                self._on_train(e)
            case EvalProgressEvent() | EvalEvent():
                if self._block is None or self._block[0] != e.step:
                    started = self._prev.time if self._prev is not None and self._prev.step == e.step else e.time
                    self._block, self._block_done = (e.step, started), set()
                if isinstance(e, EvalEvent):
                    self._evaluated = True
                    self._block_done.add("eval")
            case SampleEvent():
                self._block_done.add("sample")
            case PausedEvent():
                self._paused_at = e.time
            case UnpausedEvent():
                if self._paused_at is not None:
                    self._paused += max(0.0, e.time - self._paused_at)
                self._paused_at = None
            case DoneEvent():
                self._block = None
        self.step = max(self.step, e.step)

    def _on_train(self, e: TrainEvent) -> None:
        prev = self._prev
        steps = e.step - prev.step if prev is not None else 0
        if prev is not None and steps > 0:
            self._intervals.append((steps * e.ms_per_step / 1000, steps))
            if self._evaluated:
                wall = e.time - prev.time - self._paused
                self.eval_seconds = max(0.0, wall - steps * e.ms_per_step / 1000)
        elif prev is None:
            self._intervals.append((e.ms_per_step / 1000, 1))
        while len(self._intervals) > 1 and sum(s for s, _ in list(self._intervals)[1:]) >= WINDOW_SECONDS:
            self._intervals.popleft()
        self._prev, self._paused, self._evaluated = e, 0.0, False
        self._block = None

    # -- the answer -----------------------------------------------------------------

    @property
    def seconds_per_step(self) -> float | None:
        steps = sum(n for _, n in self._intervals)
        return sum(s for s, _ in self._intervals) / steps if steps else None

    def evals_after(self, step: int) -> int:
        """Evaluations at steps after `step` up to max_steps (the last step always evaluates)."""
        if step >= self.max_steps:
            return 0
        every = self.eval_every
        count = (self.max_steps // every - step // every) if every else 0
        return count + (0 if every and self.max_steps % every == 0 else 1)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds left; `now` (the clock the events' times are read on) counts down an
        evaluation or sample running now, which sends few or no events."""
        per_step = self.seconds_per_step
        if per_step is None:
            return None
        left = max(0, self.max_steps - self.step) * per_step
        cost = self.eval_seconds or 0.0
        left += self.evals_after(self.step) * cost
        if self._block is not None and not self._block_finished():
            left += max(0.0, cost - (max(self._now, now or 0.0) - self._block[1]))
        elif self._block is None and self._prev is not None and self._due_at(self._prev.step):
            left += cost                     # the evaluation of this step has not begun yet
        return left

    def _block_finished(self) -> bool:
        wanted = {"eval", "sample"} if self.eval_cfg.sample_tokens > 0 else {"eval"}
        return wanted <= self._block_done

    def _due_at(self, step: int) -> bool:
        every = self.eval_every
        return step == self.max_steps or bool(every and step % every == 0)
