"""A training run owned by the app: the Trainer in a worker thread, polled by the UI.

The worker thread only runs `TrainingRun.run` (constructing the Trainer,
which imports torch, and calling `Trainer.run`); it never touches widgets.
The UI polls `events_since` on a timer and sends the trainer typed commands
(engine.training.commands). `stop()` works at any moment, also before the
trainer exists.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from llmtui.engine.training.commands import Command, Stop, StopReason, TrainerControl

if TYPE_CHECKING:   # numpy: loaded by the data step's worker
    from llmtui.engine.data.prepare import PreparedData

# called as factory(cfg, resume_from=..., overwrite=..., prepared=...)
TrainerFactory = Callable[..., TrainerControl]


def default_factory(cfg, *, resume_from=None, overwrite=False, prepared=None) -> TrainerControl:
    from llmtui.engine.training.trainer import Trainer  # imports torch: only ever in the worker thread
    return Trainer(cfg, resume_from=resume_from, overwrite=overwrite, prepared=prepared)


class TrainingRun:
    def __init__(self, cfg, *, resume_from: str | Path | None = None, overwrite: bool = False,
                 prepared: PreparedData | None = None, factory: TrainerFactory | None = None):
        """`prepared`: the data step's preparation of this config's data, which the
        trainer uses while nothing it was made from changed (else it prepares again)."""
        self.cfg = cfg
        self.resume_from = resume_from
        self.overwrite = overwrite
        self.prepared = prepared
        self.factory = factory or default_factory
        self.trainer: TrainerControl | None = None
        self.result = None
        self.error: str | None = None
        self.error_is_notice = False   # a finished run or a stop before training: not a failure
        self.cancelled = False
        self.started = threading.Event()    # the trainer exists
        self.finished = threading.Event()   # run() returned or failed
        self._lock = threading.Lock()

    # -- worker thread ---------------------------------------------------------

    def run(self):
        try:
            trainer = self.factory(self.cfg, resume_from=self.resume_from, overwrite=self.overwrite,
                                   prepared=self.prepared)
            with self._lock:
                if self.cancelled:
                    return None
                self.trainer = trainer
            self.started.set()
            self.result = trainer.run()
            return self.result
        except BaseException as exc:  # shown in the app; the app stays usable
            from llmtui.engine.errors import Interrupted, RunFinished, UserError
            self.error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.error_is_notice = isinstance(exc, (RunFinished, Interrupted))
            return None
        finally:
            self.finished.set()

    # -- UI thread ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self.finished.is_set()

    def events_since(self, seq: int) -> tuple[int, list]:
        trainer = self.trainer
        if trainer is None:
            return seq, []
        return trainer.events.since(seq)

    def send(self, command: Command) -> bool:
        """Send a command to the trainer; False when there is no trainer (yet) or it ended."""
        trainer = self.trainer
        if trainer is None or not self.running:
            return False
        trainer.send(command)
        return True

    def stop(self, reason: StopReason = StopReason.STOPPED) -> None:
        with self._lock:
            self.cancelled = True
            trainer = self.trainer
        if trainer is not None:
            trainer.send(Stop(reason))

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)
