"""Training on a CPU: the C library keeps the memory a step frees for the next step.

A CPU step allocates and frees the same activations and gradients every time. With
glibc's default settings the freed memory at the top of the heap goes back to the
kernel (trim threshold 128 KiB, rising only as far as the largest block freed), so the
next step faults those pages in again, zeroed: measured on a 2-core Sapphire Rapids,
~540 page faults a step for nanoGPT's CPU recipe and ~2,200 for the cpu preset. Keeping
it costs no peak memory (the step needs it again at once; max RSS measured unchanged)
and took 2-5% off a step (the recipe 26.8-28.5 -> 26.1-27.1 ms, the cpu preset
75.3-76.0 -> 71.2-73.8 ms, alternating runs; bench/RESULTS.md).

No torch here: this only tunes the C library's allocator, which tensors' memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# freed memory at the heap's top stays with the process up to this much
TRIM_THRESHOLD = 1 << 30
# each time the heap grows, this much more than asked, so a step's growth is one call
TOP_PAD = 64 << 20
# blocks up to this size come from the heap (reused), larger ones from mmap (faulted in
# each time); 32 MiB is the most glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit)
MMAP_THRESHOLD = 32 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (once per process). True when it
    took the settings; False where the C library is not glibc (macOS, musl, Windows),
    which keeps its defaults."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl has no mallopt (AttributeError above)
    return all(mallopt(param, value) == 1 for param, value in (
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD), (M_MMAP_THRESHOLD, MMAP_THRESHOLD)))
