"""Thread workers that stop when Textual cancels them.

Textual cancels a screen's workers when the screen is removed and every worker
when the app exits, but it cannot stop a thread: the work runs on, and Python
waits for it before the process ends (Ctrl+Q during an evaluation of a large
file left a blank terminal until the evaluation was done). Long work therefore
asks, between its pieces, whether its worker was cancelled.
"""

from __future__ import annotations

from textual.worker import get_current_worker


class WorkerCancelled(Exception):
    """Raised in a thread worker's own callbacks once Textual has cancelled it."""


def raise_if_cancelled() -> None:
    """Call from the worker's thread (its progress callbacks run there)."""
    if get_current_worker().is_cancelled:
        raise WorkerCancelled
