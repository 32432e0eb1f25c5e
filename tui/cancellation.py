"""Thread workers that stop when Textual cancels them.

Textual cancels a screen's workers when the screen is removed and every worker
when the app exits, but it cannot stop a thread: the work runs on, and Python
waits for it before the process ends (Ctrl+Q during an evaluation of a large
file left a blank terminal until the evaluation was done). Long work therefore
asks, between its pieces, whether its worker was cancelled.

Textual knows the current worker only on the worker's own thread, while a
progress callback may run on a library's threads (tokenizers pulls the corpus
for a trained BPE on its own threads, where `get_current_worker()` raised
NoActiveWorker and preparation stuck at "hash 100%"). So the worker is looked
up once, on its thread, and the check reads only its flag.
"""

from __future__ import annotations

from typing import Callable

from textual.worker import get_current_worker


class WorkerCancelled(Exception):
    """Raised in a thread worker's own callbacks once Textual has cancelled it."""


def cancellation_check() -> Callable[[], None]:
    """Call on the worker's thread; returns a check, callable from any thread, that raises
    WorkerCancelled once this worker is cancelled (the engine's callbacks stop work by raising)."""
    worker = get_current_worker()

    def check() -> None:
        if worker.is_cancelled:
            raise WorkerCancelled

    return check
