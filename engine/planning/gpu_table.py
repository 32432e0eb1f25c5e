"""Known NVIDIA cards: memory, compute capability, bf16 and peak throughput.

Used to plan for a GPU the user does not have (`llmtui detect --gpu "RTX 4060"`)
and to turn FLOPs into an estimated time on a detected card. Presets are picked
from memory and compute capability, never from these names alone.

Peak TFLOP/s are the vendors' published dense figures: `fp32` for plain CUDA
cores, `tensor` for fp16/bf16 matrix math with fp32 accumulation (what
PyTorch's autocast uses; GeForce cards run it at half their fp16-accumulate
rate). TF32 is half the tensor figure on Ampere and later. They are upper
bounds: real training reaches a fraction of them (see engine.planning.estimate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownGpu:
    name: str
    memory_gb: float            # as marketed (GB); cards report it in MiB
    compute_capability: tuple[int, int]
    fp32_tflops: float
    tensor_tflops: float | None  # None: no tensor cores (fp16 then runs at 2x fp32 at best)

    @property
    def bf16(self) -> bool:
        # bf16 arithmetic arrived with Ampere (compute capability 8.0)
        return self.compute_capability >= (8, 0)


def _g(name, gb, cc, fp32, tensor):
    return KnownGpu(name, gb, cc, fp32, tensor)


KNOWN_GPUS: list[KnownGpu] = [
    # Pascal (6.x): no tensor cores; consumer cards run fp16 at 1/64 rate
    _g("GTX 1050 Ti", 4, (6, 1), 2.1, None),
    _g("GTX 1060", 6, (6, 1), 4.4, None),
    _g("GTX 1070", 8, (6, 1), 6.5, None),
    _g("GTX 1080", 8, (6, 1), 8.9, None),
    _g("GTX 1080 Ti", 11, (6, 1), 11.3, None),
    _g("Tesla P100", 16, (6, 0), 9.3, None),
    # Volta / Turing (7.x): fp16 tensor cores (not GTX 16xx), no bf16
    _g("Tesla V100", 16, (7, 0), 15.7, 125.0),
    _g("GTX 1650", 4, (7, 5), 3.0, None),
    _g("GTX 1660", 6, (7, 5), 5.0, None),
    _g("GTX 1660 SUPER", 6, (7, 5), 5.0, None),
    _g("GTX 1660 Ti", 6, (7, 5), 5.4, None),
    _g("RTX 2060", 6, (7, 5), 6.5, 25.8),
    _g("RTX 2070", 8, (7, 5), 7.5, 29.9),
    _g("RTX 2080", 8, (7, 5), 10.1, 40.3),
    _g("RTX 2080 Ti", 11, (7, 5), 13.4, 53.8),
    _g("Tesla T4", 16, (7, 5), 8.1, 65.0),
    # Ampere (8.x): bf16
    _g("RTX 3050", 8, (8, 6), 9.1, 18.2),
    _g("RTX 3060", 12, (8, 6), 12.7, 25.6),
    _g("RTX 3060 Ti", 8, (8, 6), 16.2, 32.4),
    _g("RTX 3070", 8, (8, 6), 20.3, 40.6),
    _g("RTX 3080", 10, (8, 6), 29.8, 59.5),
    _g("RTX 3090", 24, (8, 6), 35.6, 71.0),
    _g("RTX A6000", 48, (8, 6), 38.7, 154.8),
    _g("A10", 24, (8, 6), 31.2, 125.0),
    _g("A40", 48, (8, 6), 37.4, 149.7),
    _g("A100 40GB", 40, (8, 0), 19.5, 312.0),
    _g("A100 80GB", 80, (8, 0), 19.5, 312.0),
    # Ada (8.9)
    _g("RTX 4060", 8, (8, 9), 15.1, 30.2),
    _g("RTX 4060 Ti", 8, (8, 9), 22.1, 44.1),
    _g("RTX 4070", 12, (8, 9), 29.1, 58.3),
    _g("RTX 4070 Ti", 12, (8, 9), 40.1, 80.2),
    _g("RTX 4080", 16, (8, 9), 48.7, 97.5),
    _g("RTX 4090", 24, (8, 9), 82.6, 165.2),
    _g("RTX 6000 Ada", 48, (8, 9), 91.1, 364.2),
    _g("L4", 24, (8, 9), 30.3, 121.0),
    _g("L40S", 48, (8, 9), 91.6, 362.0),
    # Hopper (9.0) / Blackwell
    _g("H100 PCIe", 80, (9, 0), 51.2, 756.0),
    _g("H100", 80, (9, 0), 66.9, 989.0),
    _g("H200", 141, (9, 0), 66.9, 989.0),
    _g("RTX 5090", 32, (12, 0), 104.8, 209.5),
]


_DROP = {"nvidia", "geforce", "tesla", "gpu", "tm"}


def tokens(name: str) -> list[str]:
    """'NVIDIA GeForce RTX 4060 Laptop GPU' -> ['rtx', '4060', 'laptop'];
    letters and digits split apart, so 'rtx4060' and 'A100-SXM4-80GB' compare too."""
    words = re.findall(r"[a-z]+|[0-9]+", name.lower())
    return [w for w in words if w not in _DROP]


def _contains(have: list[str], want: list[str]) -> bool:
    """`want` appears in `have` in order (not necessarily adjacent)."""
    it = iter(have)
    return all(w in it for w in want)


def find_gpu(name: str) -> KnownGpu | None:
    """The known card `name` denotes: the entry with the most name tokens that all
    appear, in order, in it ('NVIDIA GeForce RTX 4060 Ti' -> RTX 4060 Ti, not RTX
    4060; 'NVIDIA A100-SXM4-80GB' -> A100 80GB). Variants the table lacks (laptop
    parts, 16 GB editions) map to their family; memory then comes from the device."""
    have = tokens(name)
    if not have:
        return None
    best = None
    for gpu in KNOWN_GPUS:
        want = tokens(gpu.name)
        if _contains(have, want) and (best is None or len(want) > len(tokens(best.name))):
            best = gpu
    return best


def cards_named(name: str) -> list[KnownGpu]:
    """The known cards whose name `name` contains all of, in order: 'A100' -> A100 40GB and
    A100 80GB, where find_gpu (which wants every token of an entry) finds neither."""
    have = tokens(name)
    return [gpu for gpu in KNOWN_GPUS if _contains(tokens(gpu.name), have)] if have else []


def peak_flops(gpu: KnownGpu, precision: str) -> float:
    """Published peak FLOP/s for the format training will run in."""
    if precision in ("bf16", "fp16") and gpu.tensor_tflops:
        return gpu.tensor_tflops * 1e12
    if precision == "fp16" and gpu.compute_capability in ((6, 0), (7, 5)):
        return 2 * gpu.fp32_tflops * 1e12       # P100 and GTX 16xx: fp16 at twice the fp32 rate
    if precision == "fp32" and gpu.tensor_tflops and gpu.compute_capability >= (8, 0):
        return max(gpu.fp32_tflops, gpu.tensor_tflops / 2) * 1e12  # the trainer enables TF32
    return gpu.fp32_tflops * 1e12
