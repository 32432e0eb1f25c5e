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


# on a CPU with AMX, bf16 autocast pays from this model width up. Measured on a 2-core
# Sapphire Rapids (AMX bf16), cpu preset's recipe, ms per step fp32 / bf16: 96 wide 65 / 96,
# 128 wide 95 / 109, 160 wide 133-139 / 129-131, 192 wide 171 / 145, 256 wide 289 / 201,
# 512 wide 1184 / 537. Below it the casts and bf16 elementwise ops cost more than AMX saves.
AMX_BF16_MIN_WIDTH = 192


def amx_bf16_pays(flags, width: int | None) -> bool:
    """Whether bf16 autocast trains a model `width` wide (None: a wide one) faster than
    fp32 on a CPU with these flags: AMX, and the model at least AMX_BF16_MIN_WIDTH wide."""
    return "amx_bf16" in flags and (width is None or width >= AMX_BF16_MIN_WIDTH)
