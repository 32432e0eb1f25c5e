"""How busy the CPU is while training: the cores every process used and those this
process used, between two readings of psutil's cumulative CPU times (two small
/proc reads), and whether other processes leave the training threads short of cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# other processes count as holding the CPU from half a core on
OTHERS_MIN_CORES = 0.5
# a reading over a shorter span than this says nothing (the counters tick at 10 ms)
MIN_SPAN_SECONDS = 0.2


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes of this machine have used, those of this process),
    both cumulative. The hardware boundary of this module: tests replace it."""
    import psutil

    t = psutil.cpu_times()
    # guest time is counted in user time already (Linux); idle and iowait are not busy
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system


def cpu_cores() -> int:
    """The logical CPUs the busy figure is out of (the whole machine's)."""
    try:
        import psutil
        return psutil.cpu_count() or os.cpu_count() or 1
    except Exception:   # psutil without a CPU count on this platform
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuLoad:
    busy: float      # cores busy, all processes (0..cores)
    others: float    # cores busy with processes other than this one
    cores: int


def contended(others: float | None, cores: int | None, threads: int | None) -> bool:
    """Other processes hold cores the training threads need: they use half a core or
    more, and with the threads they want more cores than there are."""
    if others is None or not cores or not threads:
        return False
    return others >= OTHERS_MIN_CORES and others + threads > cores + 0.25


class LoadMeter:
    """The CPU load since the previous reading."""

    def __init__(self) -> None:
        self.cores = cpu_cores()
        self._last: tuple[float, float, float] | None = None
        self._load: CpuLoad | None = None
        self.read()

    def read(self) -> CpuLoad | None:
        """The load since the previous reading; over a span too short to tell, the
        previous figure. None before there is one, or where the counters cannot be read."""
        now = time.monotonic()
        try:
            busy, own = cpu_seconds()
        except Exception:   # no psutil counters on this platform: no figure, training goes on
            return None
        last = self._last
        if last is not None and now - last[0] < MIN_SPAN_SECONDS:
            return self._load           # keep the older reading: the span grows
        self._last = (now, busy, own)
        if last is None:
            return None
        span = now - last[0]
        all_cores = min(float(self.cores), max(0.0, (busy - last[1]) / span))
        mine = max(0.0, (own - last[2]) / span)
        self._load = CpuLoad(busy=all_cores, others=max(0.0, all_cores - mine), cores=self.cores)
        return self._load
