"""What front ends may ask of a running trainer, and the protocol they hold it by.

Commands are small frozen dataclasses sent with `trainer.send(command)` from
any thread; they take effect at the next step boundary (a pause at once).
The app's tests drive a scripted trainer through the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from llmtui.engine.training.events import EventBuffer


class StopReason(StrEnum):
    """Why a run ended (TrainResult.stop_reason, the "done" record, train_log.json). A
    StrEnum: it is written, read and compared as its string."""
    MAX_STEPS = "max_steps"              # reached training.max_steps (or its epochs)
    EARLY_STOPPING = "early_stopping"    # val loss stopped improving
    STOPPED = "stopped"                  # a Stop from a front end (the app's x)
    INTERRUPTED = "interrupted"          # Ctrl-C, SIGTERM, SIGHUP, the app quitting
    NONFINITE_LOSS = "nonfinite_loss"    # diverged
    RECORD_FAILED = "record_failed"      # metrics.jsonl could not be written (a full disk)

    @classmethod
    def _missing_(cls, value):
        """A front end's own word for a stop (`trainer.stop("enough")`) is a stop."""
        return cls.STOPPED if isinstance(value, str) else None


@dataclass(frozen=True)
class Pause:
    """Stop between steps until Unpause; "save now" and "sample now" are still served."""


@dataclass(frozen=True)
class Unpause:
    """Continue after a Pause."""


@dataclass(frozen=True)
class Stop:
    """Finish the current step, save `last`, end the run with this stop reason."""
    reason: StopReason = StopReason.STOPPED


@dataclass(frozen=True)
class SaveNow:
    """Write the `last` checkpoint at the next step boundary (at once while paused)."""


@dataclass(frozen=True)
class SetEarlyStopping:
    enabled: bool


@dataclass(frozen=True)
class SampleNow:
    """Generate text from the current weights (the config's eval prompt when None)."""
    prompt: str | None = None


Command = Pause | Unpause | Stop | SaveNow | SetEarlyStopping | SampleNow


@runtime_checkable
class TrainerControl(Protocol):
    """A trainer as a front end sees it: its events, its commands, its run."""

    events: EventBuffer

    def send(self, command: Command) -> None: ...

    def run(self) -> Any: ...
