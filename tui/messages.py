"""Typed messages: what thread workers post to their screens, and what screens and
the app tell each other.

A worker (`@work(thread=True)`) never touches widgets: it posts one of these
when it is done, and the screen handles it with `@on(...)` on the UI thread.
A worker that raises is reported once by the app's central handler
(LlmtuiApp.on_worker_state_changed), which then posts WorkerFailed to the
worker's screen so it can put its controls back.

A screen tells the app what happened by posting a message to itself that
bubbles up to the app (HardwareReady here; the monitor's TrainingFinished);
it does not call the app's methods for that. The app tells a screen by posting
to it a message that does not bubble (the monitor's TrainingStopping).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message
from textual.worker import Worker

if TYPE_CHECKING:   # the payloads' types; the modules load in the workers that make them
    from llmtui.engine.data.prepare import PreparedData
    from llmtui.engine.inference.evaluate import EvalResult
    from llmtui.engine.planning.hardware import HardwareInfo
    from llmtui.engine.planning.recommend import Recommendation
    from llmtui.engine.training.events import Event
    from llmtui.engine.training.history import RunHistory
    from llmtui.engine.training.runs import RunInfo


class HardwareDetected(Message):
    def __init__(self, hardware: HardwareInfo, recommendation: Recommendation):
        super().__init__()
        self.hardware = hardware
        self.recommendation = recommendation


class HardwareReady(Message):
    """To the app: hardware detection ended (app.hardware or app.detection_error is
    set), so what is estimated from the hardware can be estimated again."""


class DataPrepared(Message):
    def __init__(self, data: PreparedData):
        super().__init__()
        self.data = data


class SampleReady(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class HistoryLoaded(Message):
    """A run's earlier curves, read from its metrics.jsonl."""

    def __init__(self, train: list[tuple[int, float]], val: list[tuple[int, float]]):
        super().__init__()
        self.train = train
        self.val = val


class RunsListed(Message):
    def __init__(self, runs: list[RunInfo], seconds: float):
        super().__init__()
        self.runs = runs
        self.seconds = seconds


class RunLoaded(Message):
    """A run's details read in a worker: its info, history and config text."""

    def __init__(self, info: RunInfo | None, history: RunHistory, config_text: str):
        super().__init__()
        self.info = info
        self.history = history
        self.config_text = config_text


class RunFollowed(Message):
    """New lines of a followed run's metrics.jsonl (reset: the file was cut back)."""

    def __init__(self, events: list[Event], reset: bool, info: RunInfo | None):
        super().__init__()
        self.events = events
        self.reset = reset
        self.info = info


class RunsCompared(Message):
    def __init__(self, curves: list[tuple[str, list[tuple[int, float]], list[tuple[int, float]]]]):
        super().__init__()
        self.curves = curves   # (run name, train points, val points)


class CheckpointsVerified(Message):
    def __init__(self, results: list[tuple[str, int, str | None]]):
        super().__init__()
        self.results = results   # (name, step, problem or None)
class TextGenerated(Message):
    """More of the text being generated (a few tokens' worth)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text


class GenerationEnded(Message):
    def __init__(self, tokens: int, seconds: float, stopped: bool):
        super().__init__()
        self.tokens = tokens
        self.seconds = seconds
        self.stopped = stopped


class EvalProgress(Message):
    def __init__(self, done: int, total: int):
        super().__init__()
        self.done = done
        self.total = total


class EvalFinished(Message):
    def __init__(self, result: EvalResult):
        super().__init__()
        self.result = result


class WorkerFailed(Message):
    """A worker of this screen raised; `text` is what the user was told."""

    def __init__(self, worker: Worker, text: str):
        super().__init__()
        self.worker = worker
        self.text = text


def error_text(error: BaseException) -> str:
    """One line for an exception: a user error's own words, else its type and message."""
    from llmtui.engine.errors import UserError

    return str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
