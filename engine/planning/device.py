"""Pick the torch device and a precision it really runs fast.

The facts come from `torch.cuda` and `torch.backends.mps` queries and
/proc/cpuinfo flags; nothing is assumed from a device's name. Apple GPUs
(`mps`) run fp16 everywhere and bf16 where torch says so (macOS 14 and later);
they have no float64. Ops MPS lacks run on the CPU when PYTORCH_ENABLE_MPS_FALLBACK=1,
which `import llmtui` sets on macOS before torch loads (PyTorch reads it then). Hardware detection for the hardware screen lives
in engine/planning/hardware.py; this module is only what the trainer needs.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llmtui.engine import fsutil
from llmtui.engine.errors import ConfigError
from llmtui.engine.planning import cpu
from llmtui.engine.planning.sizing import fastest_precision

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Placement:
    device: torch.device
    precision: str                       # what will really run: fp32 | bf16 | fp16
    warnings: list[str] = field(default_factory=list)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.precision == "fp32" else DTYPES[self.precision]

    @property
    def uses_grad_scaler(self) -> bool:
        # fp16 has too few exponent bits for small gradients; bf16 does not need scaling
        return self.precision == "fp16" and self.device.type in ("cuda", "mps")


def mps_available() -> bool:
    """Whether torch can train on an Apple GPU here (torch.backends.mps)."""
    try:
        return bool(torch.backends.mps.is_available())
    except Exception:  # noqa: BLE001 - a torch without MPS support at all
        return False


def mps_bf16() -> bool:
    """bf16 on MPS: torch supports it from macOS 14 (torch.backends.mps.is_macos_or_newer)."""
    try:
        return bool(torch.backends.mps.is_macos_or_newer(14, 0))
    except Exception:  # noqa: BLE001
        return False


MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"


@functools.cache
def resolve_device(requested: str) -> tuple[torch.device, list[str]]:
    warnings: list[str] = []
    if requested == "cpu":
        return torch.device("cpu"), warnings
    if requested == "mps":
        if mps_available():
            return torch.device("mps"), warnings
        why = "this torch build has no MPS support" if not torch.backends.mps.is_built() else \
            "no Apple GPU here (MPS needs an Apple silicon Mac with macOS 12.3 or later)"
        warnings.append(f"run.device = \"mps\" but torch cannot use an Apple GPU ({why}); training on CPU")
        return torch.device("cpu"), warnings
    available = torch.cuda.is_available()
    if requested == "auto":
        if not available and mps_available():
            return torch.device("mps"), warnings
        return torch.device("cuda" if available else "cpu"), warnings
    if not available:
        warnings.append(f"run.device = \"{requested}\" but this torch build cannot use CUDA "
                        f"({'CPU-only build' if torch.version.cuda is None else 'no usable GPU or driver'}); "
                        "training on CPU")
        return torch.device("cpu"), warnings
    device = torch.device(requested)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"run.device = \"{requested}\": only {torch.cuda.device_count()} CUDA "
                          f"device(s) visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device, warnings


def resolve_precision(precision: str, device: torch.device) -> tuple[str, list[str]]:
    if precision == "fp32":
        return precision, []
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            return "fp32", [f"training.precision = \"bf16\" but {torch.cuda.get_device_name(device)} "
                            "has no native bf16; training in fp32 (fp16 is an option on this GPU)"]
        if precision == "fp16" and major < 6:
            return "fp32", [f"training.precision = \"fp16\" but {torch.cuda.get_device_name(device)} "
                            f"(compute capability {major}.x) has no fast fp16; training in fp32"]
        return precision, []
    if device.type == "mps":
        if precision == "bf16" and not mps_bf16():
            return "fp16", ["training.precision = \"bf16\" but torch supports bf16 on Apple GPUs from "
                            "macOS 14 only; training in fp16 (with loss scaling)"]
        return precision, []
    if device.type == "cpu" and cpu.cpu_has_native(precision):
        return precision, []
    return "fp32", [f"training.precision = \"{precision}\" but this {device.type.upper()} has no native "
                    f"{precision} math (it would run many times slower); training in fp32"]


def auto_precision(device: torch.device, width: int | None, fsdp: bool = False) -> str:
    """training.precision = "auto" on `device` for a model `width` wide: the facts from
    torch's queries and the CPU's flags, the choice sizing.fastest_precision's (the rule the
    estimates and autotune use). Sharded training (fsdp) takes no fp16 (config check)."""
    if device.type == "cuda":
        choice = fastest_precision("cuda", width,
                                   gpu_bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                                   compute_capability=torch.cuda.get_device_capability(device))
    else:
        choice = fastest_precision(device.type, width, cpu_flags=cpu.cpu_flags())
    return "fp32" if fsdp and choice == "fp16" else choice


def place(requested_device: str, precision: str, local_rank: int | None = None,
          width: int | None = None, fsdp: bool = False) -> Placement:
    """`local_rank` (under torchrun) pins each process to its own GPU; precision "auto"
    picks for a model `width` wide (auto_precision)."""
    device, warnings = resolve_device(requested_device)
    if local_rank is not None and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    if precision == "auto":
        precision = auto_precision(device, width, fsdp)
    precision, more = resolve_precision(precision, device)
    if device.type == "mps" and os.environ.get(MPS_FALLBACK) != "1":
        more.append(f"{MPS_FALLBACK} is not 1 (torch was imported before llmtui, or it was set to 0): "
                    "an op the Apple GPU lacks will stop training instead of running on the CPU; "
                    f"set {MPS_FALLBACK}=1 before Python starts")
    return Placement(device, precision, warnings + more)


def configure_threads(threads: int, share: int = 1) -> int:
    """Intra-op threads: one per physical core by default, split between the
    `share` processes training on this machine. Hyperthreads and
    oversubscription slow small matmuls down on CPU."""
    if threads <= 0:
        try:
            import psutil
            threads = psutil.cpu_count(logical=False) or torch.get_num_threads()
        except Exception:
            threads = torch.get_num_threads()
        threads = max(1, threads // max(1, share))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@functools.cache
def matmul_peak_flops(device_type: str, precision: str, device_index: int = 0) -> float:
    """FLOP/s of a large square matmul measured now: the MFU denominator."""
    dtype = DTYPES[precision]
    n = 1024 if device_type == "cpu" else 8192 if device_type == "cuda" else 4096
    device = torch.device(device_type, device_index) if device_type == "cuda" else torch.device(device_type)
    # a private generator: measuring must not move the training RNG stream
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (GPUs run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------------
# the MFU denominator: this machine's best measured peak, remembered

def _peak_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmtui" / "matmul_peak.json"


def _peak_key(device_type: str, precision: str, device_index: int) -> str:
    if device_type == "cuda":
        name = torch.cuda.get_device_name(device_index)
    elif device_type == "mps":
        name = torch.backends.mps.get_name()
    else:
        name = f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
    return f"{device_type}|{name}|{precision}|torch {torch.__version__}"


def remembered_peak(device_type: str, precision: str, device_index: int = 0,
                    at_least: float = 0.0) -> float:
    """The MFU denominator: the best matmul FLOP/s ever seen on this device, in this
    format and torch version, kept in the user's cache (XDG_CACHE_HOME).

    A peak measured once at start-up is too low whenever the machine happens to be
    busy then, which put MFU above 100%. The best of all measurements (and of any
    training throughput that beat them: `at_least`) only grows towards the true
    peak, so MFU stays at or under 100% and comparable between runs."""
    key = _peak_key(device_type, precision, device_index)
    path = _peak_cache_path()
    try:
        known = json.loads(path.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    seen = known.get(key)
    before = float(seen) if isinstance(seen, (int, float)) else 0.0
    best = max(before, at_least, matmul_peak_flops(device_type, precision, device_index))
    if best > before:
        known[key] = best
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write(path, json.dumps(known, indent=1).encode())
        except OSError:
            pass  # a read-only home: the figure is still right for this run
    return best
