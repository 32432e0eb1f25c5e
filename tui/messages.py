"""Typed messages that thread workers post to their screens.

A worker (`@work(thread=True)`) never touches widgets: it posts one of these
when it is done, and the screen handles it with `@on(...)` on the UI thread.
A worker that raises is reported once by the app's central handler
(LlmtuiApp.on_worker_state_changed), which then posts WorkerFailed to the
worker's screen so it can put its controls back.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.worker import Worker


class HardwareDetected(Message):
    def __init__(self, hardware: Any, recommendation: Any):
        super().__init__()
        self.hardware = hardware
        self.recommendation = recommendation


class DataPrepared(Message):
    def __init__(self, summary: dict[str, Any]):
        super().__init__()
        self.summary = summary


class SampleReady(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


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
