"""Number formatting shared by the screens (pure functions)."""

from __future__ import annotations

import math


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units (KiB, MiB, GiB: powers of 1024, everywhere in the app)."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_mb(mb: float | None) -> str:
    return "n/a" if mb is None else fmt_bytes(mb * 2**20)


def fmt_count(n: float | None) -> str:
    """0.80M, 12.3K, 1.20B."""
    if n is None:
        return "n/a"
    n = float(n)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def fmt_flops(n: float | None) -> str:
    """Floating-point operations in decimal units, 3 digits: 2.36 GFLOP, 301 GFLOP."""
    if n is None:
        return "n/a"
    n = float(n)
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {prefix}FLOP"
    return f"{n:.0f} FLOP"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    seconds = int(max(0, round(seconds)))
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def fmt_step_time(seconds: float) -> str:
    """A step's time: "70 ms" under a second, else "1.2 s"."""
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def fmt_loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A compact number: 0.001 -> 1.00e-03, 1234.5 -> 1,234."""
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) < 0.01 or abs(x) >= 1e7:
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_used_total(used: float, total: float) -> str:
    """'2.7/23.5 GiB': both in the unit of the total."""
    for unit, div in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if total >= div:
            return f"{used / div:.1f}/{total / div:.1f} {unit}"
    return f"{fmt_bytes(used)}/{fmt_bytes(total)}"
