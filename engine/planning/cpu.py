"""What this CPU's matrix instructions run fast: /proc/cpuinfo flags, no torch.

Hardware detection (engine.planning.hardware, which the TUI imports for its types)
and the device choice (engine.planning.device, which imports torch) both ask here.
"""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native(precision: str) -> bool:
    """Whether this CPU has matrix instructions for the format. Without them
    PyTorch emulates bf16/fp16 matmuls, measured over 100x slower than fp32."""
    flags = cpu_flags()
    if precision == "bf16":
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    if precision == "fp16":
        return bool({"amx_fp16", "avx512_fp16"} & flags)
    return True
