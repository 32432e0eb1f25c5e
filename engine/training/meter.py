"""The loop's bookkeeping between two log lines: the steps, their summed loss, the
tokens and the training time since the last line, and what a log line reports from
them (mean loss, tokens/s, ms per step, MFU, the CPU load, the memory in use).

The loss is summed on the device and read back once per log line (never each step,
so a GPU is not stalled by the host), and only before the clock is read: the read
waits for the device, whose work belongs to the interval. Time spent evaluating,
saving checkpoints or paused is excluded (`exclude`), so tokens/s and ms per step
describe training alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from llmtui.engine.planning.load import CpuLoad, LoadMeter


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the FLOPs the model's tokens took per second over the
    device's peak, never over 1 (a peak that training beats was too low)."""
    return min(1.0, flops_per_token * tokens_per_sec / peak_flops)


class LossSum:
    """Micro-batch losses summed on the device, and how many micro-batches they are."""

    def __init__(self, device: torch.device):
        self._device = device
        self.total = torch.zeros((), device=device)
        self.micro_batches = 0

    def add(self, loss_sum: torch.Tensor, micro_batches: int) -> None:
        """One optimizer step: the sum of its `micro_batches` micro-batch losses. The
        count is the step's own: after an out-of-memory halving a step has more."""
        self.total += loss_sum
        self.micro_batches += micro_batches

    def mean(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float | None:
        """The mean loss of a micro-batch (reads the device), over all processes when
        `reduce` averages the sum across them; None when nothing was added."""
        if not self.micro_batches:
            return None
        total = self.total if reduce is None else reduce(self.total)
        return total.item() / self.micro_batches


@dataclass(frozen=True)
class Interval:
    """What happened between two log lines."""

    steps: int
    seconds: float              # training time: evaluations, checkpoints and pauses excluded
    loss: float                 # mean loss of a micro-batch
    tokens: int                 # tokens trained on, over all processes
    load: CpuLoad | None = None  # the CPU load over the interval, where it can be read

    @property
    def step_seconds(self) -> float:
        return self.seconds / self.steps

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.step_seconds

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


class IntervalMeter:
    """Counts the steps of the current interval; `read` says what they came to and
    `restart` begins the next interval."""

    def __init__(self, device: torch.device, *, load: LoadMeter | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self._device = device
        self._clock = clock
        self.load = load
        self.restart()

    def restart(self) -> None:
        """Begin an interval now."""
        self.steps = 0
        self.tokens = 0
        self.loss = LossSum(self._device)
        self._excluded = 0.0
        self._start = self._clock()

    def add(self, loss_sum: torch.Tensor, micro_batches: int, tokens: int) -> None:
        """One optimizer step of `micro_batches` micro-batches and `tokens` tokens."""
        self.loss.add(loss_sum, micro_batches)
        self.steps += 1
        self.tokens += tokens

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (an evaluation, a checkpoint, a pause) out of the training time."""
        self._excluded += seconds

    def read(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Interval:
        """The interval so far (at least one step): the loss first, since reading it
        waits for the device, then the clock and the CPU load."""
        loss = self.loss.mean(reduce)
        if loss is None:
            raise ValueError("an interval without steps has nothing to read")
        seconds = self._clock() - self._start - self._excluded
        load = self.load.read() if self.load is not None else None
        return Interval(steps=self.steps, seconds=seconds, loss=loss, tokens=self.tokens, load=load)


def load_meter() -> LoadMeter | None:
    """The CPU load meter, or None where psutil cannot read CPU times."""
    try:
        return LoadMeter()
    except Exception:
        return None


def memory_figures(device: torch.device) -> dict[str, float]:
    """A train event's memory readings for the device."""
    if device.type == "cuda":
        return {"memory_allocated_mb": torch.cuda.memory_allocated(device) / 2**20,
                "memory_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    import psutil
    if device.type == "mps":   # unified memory: the GPU's tensors and the process
        return {"memory_allocated_mb": torch.mps.current_allocated_memory() / 2**20,
                "memory_rss_mb": psutil.Process().memory_info().rss / 2**20}
    return {"memory_rss_mb": psutil.Process().memory_info().rss / 2**20}
