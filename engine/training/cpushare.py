"""Training on a CPU that other processes use too: a warning, once while it lasts, when
they hold the cores the training threads need and a step takes far longer than estimated
for a free machine; and, where llmtui chose the thread count (run.threads = 0), training
on the cores they leave free.
"""

from __future__ import annotations

from typing import Callable

import torch

from llmtui.engine.planning.load import CpuLoad, contended
from llmtui.engine.training.build import TrainingSetup, free_machine_step_seconds

# warn that the machine is busy when other processes hold cores the training threads need
# and a step takes this many times the estimate (and at least BUSY_MIN_STEP_SECONDS: tiny
# models are far off a FLOP estimate anyway, and nobody waits for them)
BUSY_SLOWDOWN = 3.0
BUSY_MIN_STEP_SECONDS = 0.2
# with run.threads = 0 (one per core), train on the cores other processes leave free: two
# intra-op threads on two cores of which other processes hold 1.6 waited for each other
# at every op, 1.9 s per forward+backward of the cpu preset against 0.2 s on one thread
# (measured here, load average 5). Fewer threads at once, more only after this many
# readings in a row say the cores are free again (no flapping on a passing spike).
THREADS_BACK_AFTER_READINGS = 2


class CpuShare:
    """Follows the CPU load readings of one training segment (one per train log line)."""

    def __init__(self, setup: TrainingSetup, *, auto_threads: int | None, warn: Callable[[str], None]):
        """`auto_threads`: the thread count llmtui chose (run.threads = 0), which the
        threads may go back up to; None where the count is the user's (it is kept)."""
        self._setup = setup
        self._auto_threads = auto_threads
        self._warn = warn
        self._busy_warned = False
        self._free_readings = 0        # readings in a row with cores to spare

    def reading(self, load: CpuLoad | None, step_seconds: float) -> None:
        """The load over the last interval, and the seconds its steps took."""
        self._warn_if_busy(load, step_seconds)
        self._fit_threads(load)

    def _warn_if_busy(self, load: CpuLoad | None, step_seconds: float) -> None:
        setup = self._setup
        if load is None or setup.device.type != "cpu":
            return
        if not contended(load.others, load.cores, setup.threads):
            self._busy_warned = False       # it cleared: a later spell is told again
            return
        if self._busy_warned or step_seconds < BUSY_MIN_STEP_SECONDS:
            return
        expected = free_machine_step_seconds(setup)    # only now: it detects the hardware
        if expected is None or step_seconds < BUSY_SLOWDOWN * expected:
            return
        self._busy_warned = True
        self._warn(f"the machine is busy: other processes use {load.others:.1f} of its {load.cores} CPU "
                   f"cores while training runs {setup.threads} threads; a step takes "
                   f"{_seconds(step_seconds)}, {step_seconds / expected:,.0f}x the {_seconds(expected)} "
                   "estimated for a free machine (the ETA follows the measured time)")

    def _fit_threads(self, load: CpuLoad | None) -> None:
        """Train on the cores other processes leave free (THREADS_BACK_AFTER_READINGS)."""
        setup = self._setup
        if self._auto_threads is None or load is None or setup.threads is None:
            return
        free = load.cores - load.others
        want = max(1, min(self._auto_threads, int(free + 0.25)))
        now = setup.threads
        if want > now:
            self._free_readings += 1
            if self._free_readings < THREADS_BACK_AFTER_READINGS:
                return
        else:
            self._free_readings = 0
        if want == now:
            return
        torch.set_num_threads(want)
        setup.threads = want
        self._free_readings = 0
        if want < now:
            self._warn(f"other processes use {load.others:.1f} of the {load.cores} CPU cores: training "
                       f"goes on with {want} thread{'s' if want > 1 else ''} instead of {now} (threads "
                       "that wait for a busy core slow every step down), and back when the cores are free")
        else:
            self._warn(f"the CPU cores are free again: training goes on with {want} threads")


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"
