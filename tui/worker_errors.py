"""Worker errors reach the app's one handler, from every screen and widget.

Textual posts a worker's `Worker.StateChanged` to the node that started it (the
screen or widget), and that message does not bubble: the app's handler
(LlmtuiApp.on_worker_state_changed, which notifies and posts WorkerFailed back
to the worker's node) only ever saw the app's own workers. A screen's worker
that raised was swallowed, and the screen showed "Preparing… 0%" or
"Evaluating… 0%" forever. Every class that starts a worker takes this mixin.

The classes that take it type their `self.app` (`app = getters.app(LlmtuiAppBase)`,
as every screen does), which the handler needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from textual.worker import Worker

if TYPE_CHECKING:
    from llmtui.tui.app_base import LlmtuiAppBase


class _InLlmtuiApp(Protocol):
    @property
    def app(self) -> LlmtuiAppBase: ...


class ReportsWorkerErrors:
    """Mixin for a Screen or Widget that runs workers: hands their state changes to the app."""

    def on_worker_state_changed(self: _InLlmtuiApp, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)
