"""What this machine has: CPU, RAM, every NVIDIA GPU, an Apple GPU, and what torch can use.

GPUs come from NVML (the `pynvml` module of nvidia-ml-py), which sees the card
and the driver even when this torch build cannot use them; torch's own view
(`torch.cuda`) says what training can really run on. Every probe degrades on
its own: no driver, a missing library or a metric the card does not report
leaves that value as None (shown as unavailable) and adds a note, never an
exception. NVML is initialised once, lazily, and left open for live monitors.
An Apple GPU comes from torch.backends.mps (and torch.mps for its memory).
"""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmtui.engine.planning import cpu

# CPU flags that decide which precisions run fast (see engine.planning.cpu.cpu_has_native)
PRECISION_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16",
                   "amx_bf16", "amx_fp16", "amx_tile", "asimd", "sve")


@dataclass
class CpuInfo:
    model: str
    physical_cores: int
    logical_cores: int
    total_ram_bytes: int
    available_ram_bytes: int
    bf16_native: bool
    fp16_native: bool
    flags: list[str]               # only the flags that matter for precision


@dataclass
class GpuInfo:
    index: int                     # NVML index (nvidia-smi's numbering)
    name: str
    total_memory_bytes: int
    free_memory_bytes: int | None
    compute_capability: tuple[int, int] | None
    driver_version: str | None
    cuda_version: str | None       # highest CUDA version the driver supports
    utilization_percent: float | None
    temperature_c: float | None
    usable_by_torch: bool
    bf16: bool                     # native bf16 (no emulation), as torch decides it
    notes: list[str] = field(default_factory=list)
    torch_index: int | None = None  # N in "cuda:N" when torch can use it


@dataclass
class MpsInfo:
    """An Apple GPU torch can train on (run.device = "mps")."""
    name: str                      # Metal's name for it ("Apple M2 Pro")
    cores: int | None              # GPU cores
    memory_bytes: int              # unified memory torch recommends this process use
    bf16: bool                     # torch runs bf16 on it (macOS 14 and later)


@dataclass
class HardwareInfo:
    cpu: CpuInfo
    gpus: list[GpuInfo]
    torch_version: str
    torch_cuda_available: bool
    torch_cuda_version: str | None
    torch_device_count: int
    warnings: list[str]
    mps: MpsInfo | None = None     # an Apple GPU torch can use

    def to_json(self) -> dict:
        out = asdict(self)
        for gpu in out["gpus"]:
            cc = gpu["compute_capability"]
            gpu["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
        return out

    def usable_gpus(self) -> list[GpuInfo]:
        return [g for g in self.gpus if g.usable_by_torch]


# ---------------------------------------------------------------------------
# NVML: one lazy initialisation per process

_nvml_lock = threading.Lock()
_nvml_state: dict = {}


def nvml():
    """The initialised pynvml module, or None (the reason is in nvml_error())."""
    with _nvml_lock:
        if "module" not in _nvml_state:
            _nvml_state["module"], _nvml_state["error"] = _init_nvml()
        return _nvml_state["module"]


def nvml_error() -> str | None:
    nvml()
    return _nvml_state["error"]


def _init_nvml():
    try:
        import pynvml
    except ImportError:
        return None, "the nvidia-ml-py package is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return None, "no NVIDIA driver library (libnvidia-ml) on this machine"
    except pynvml.NVMLError_DriverNotLoaded:
        return None, "the NVIDIA driver is not loaded"
    except pynvml.NVMLError as exc:
        return None, f"NVML failed to start ({exc})"
    except OSError as exc:                      # odd installs: the library exists but will not load
        return None, f"NVML failed to load ({exc})"
    return pynvml, None


def _reset_nvml() -> None:
    """Forget the NVML state (tests, or after a driver was installed)."""
    with _nvml_lock:
        _nvml_state.clear()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_memory_used(index: int) -> tuple[int, int] | None:
    """(used, total) bytes of GPU `index` (NVML numbering) for live monitors;
    None when NVML cannot say. Cheap: no torch, no CUDA context."""
    nv = nvml()
    if nv is None:
        return None
    try:
        mem = nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(index))
        return int(mem.used), int(mem.total)
    except nv.NVMLError:
        return None


# ---------------------------------------------------------------------------
# detection

_cache: dict = {}
_detect_lock = threading.Lock()


def detect(refresh: bool = False) -> HardwareInfo:
    """Everything at once. Cached per process (the app's screens and the wizard
    share one answer); refresh=True reads it again."""
    with _detect_lock:
        if refresh or "info" not in _cache:
            if refresh:
                _reset_nvml()
            _cache["info"] = _detect()
        return _cache["info"]


def _detect() -> HardwareInfo:
    import torch

    warnings: list[str] = []
    cpu = detect_cpu()
    cuda_ok = _safe(torch.cuda.is_available, False)
    count = _safe(torch.cuda.device_count, 0) if cuda_ok else 0
    torch_gpus = [_torch_props(i) for i in range(count)]
    uuids: dict[int, str] = {}
    gpus = _nvml_gpus(warnings, uuids)
    _match_torch(gpus, uuids, torch_gpus)
    if gpus and not cuda_ok:
        warnings.append(_not_usable_reason(gpus, torch.version.cuda))
    for gpu in gpus:
        if gpu.usable_by_torch and gpu.compute_capability:
            note = _arch_note(gpu.compute_capability, _safe(torch.cuda.get_arch_list, []))
            if note:
                gpu.notes.append(note)
                gpu.usable_by_torch = False
    return HardwareInfo(cpu=cpu, gpus=gpus, torch_version=str(torch.__version__).split("+")[0],
                        torch_cuda_available=cuda_ok, torch_cuda_version=torch.version.cuda,
                        torch_device_count=count, warnings=warnings, mps=detect_mps(cpu))


def detect_mps(cpu: CpuInfo) -> MpsInfo | None:
    """The Apple GPU, when torch.backends.mps says torch can use one."""
    import torch

    from llmtui.engine.planning.device import mps_available, mps_bf16

    if not mps_available():
        return None
    memory = _safe(torch.mps.recommended_max_memory, 0) or cpu.total_ram_bytes
    return MpsInfo(name=str(_safe(torch.backends.mps.get_name, "") or "Apple GPU"),
                   cores=_safe(torch.backends.mps.get_core_count, None), memory_bytes=int(memory),
                   bf16=mps_bf16())


def _safe(fn, default, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a broken CUDA install raises from the most innocent query
        return default


def detect_cpu() -> CpuInfo:
    import psutil

    mem = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    flags = sorted(f for f in cpu.cpu_flags() | _arm_features() if f in PRECISION_FLAGS)
    return CpuInfo(model=_cpu_model(), physical_cores=physical, logical_cores=logical,
                   total_ram_bytes=int(mem.total), available_ram_bytes=int(mem.available),
                   bf16_native=cpu.cpu_has_native("bf16"), fp16_native=cpu.cpu_has_native("fp16"),
                   flags=flags)


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_model() -> str:
    for line in _cpuinfo_lines():
        if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _arm_features() -> set[str]:
    for line in _cpuinfo_lines():
        if line.startswith("Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def _torch_props(i: int) -> dict:
    import torch

    props = torch.cuda.get_device_properties(i)
    uuid = str(getattr(props, "uuid", "") or "").removeprefix("GPU-")
    return {"index": i, "name": props.name, "total": int(props.total_memory),
            "cc": (int(props.major), int(props.minor)), "uuid": uuid}


def _nvml_gpus(warnings: list[str], uuids: dict[int, str]) -> list[GpuInfo]:
    """Every GPU NVML sees; fills `uuids` (NVML index -> UUID) for matching with torch."""
    nv = nvml()
    if nv is None:
        return []
    try:
        count = nv.nvmlDeviceGetCount()
    except nv.NVMLError as exc:
        warnings.append(f"NVML could not count GPUs ({exc})")
        return []
    driver = _metric(nv, None, nv.nvmlSystemGetDriverVersion)
    cuda = _metric(nv, None, nv.nvmlSystemGetCudaDriverVersion)
    cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
    gpus = []
    for i in range(count):
        notes: list[str] = []
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
        except nv.NVMLError as exc:
            warnings.append(f"NVML cannot open GPU {i} ({exc})")
            continue
        name = _metric(nv, notes, nv.nvmlDeviceGetName, handle, label="name")
        mem = _metric(nv, notes, nv.nvmlDeviceGetMemoryInfo, handle, label="memory")
        cc = _metric(nv, notes, nv.nvmlDeviceGetCudaComputeCapability, handle,
                     label="compute capability")
        util = _metric(nv, notes, nv.nvmlDeviceGetUtilizationRates, handle, label="utilization")
        temp = _metric(nv, notes, nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU,
                       label="temperature")
        uuid = _metric(nv, None, nv.nvmlDeviceGetUUID, handle)
        gpu = GpuInfo(
            index=i, name=_text(name) if name is not None else f"GPU {i}",
            total_memory_bytes=int(mem.total) if mem is not None else 0,
            free_memory_bytes=int(mem.free) if mem is not None else None,
            compute_capability=(int(cc[0]), int(cc[1])) if cc is not None else None,
            driver_version=_text(driver) if driver is not None else None, cuda_version=cuda_text,
            utilization_percent=float(util.gpu) if util is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            usable_by_torch=False, bf16=False, notes=notes)
        uuids[i] = _text(uuid).removeprefix("GPU-") if uuid is not None else ""
        gpus.append(gpu)
    return gpus


def _metric(nv, notes: list[str] | None, fn, *args, label: str = ""):
    """One NVML query; None (and a note) when the card or driver cannot answer."""
    try:
        return fn(*args)
    except nv.NVMLError as exc:
        if notes is not None:
            why = "not supported by this GPU/driver" if isinstance(exc, nv.NVMLError_NotSupported) \
                else str(exc)
            notes.append(f"{label}: unavailable ({why})")
        return None


def _match_torch(gpus: list[GpuInfo], uuids: dict[int, str], torch_gpus: list[dict]) -> None:
    """Mark the NVML GPUs torch can use, matched by UUID (CUDA_VISIBLE_DEVICES and
    CUDA's device order may differ from NVML's), else by position. GPUs torch
    sees but NVML does not (no NVML library, ROCm) are added from torch alone."""
    unmatched = []
    by_uuid = {uuids[g.index]: g for g in gpus if uuids.get(g.index)}
    for t in torch_gpus:
        gpu = by_uuid.get(t["uuid"]) if t["uuid"] else None
        if gpu is None:
            unmatched.append(t)
        else:
            _mark_usable(gpu, t)
    free = [g for g in gpus if g.torch_index is None]
    visible = _visible_devices()
    for t in unmatched:
        gpu = None
        if visible is not None and t["index"] < len(visible):
            gpu = next((g for g in free if g.index == visible[t["index"]]), None)
        if gpu is None:
            gpu = next((g for g in free if g.name == t["name"]), None)
        if gpu is None:
            gpu = GpuInfo(index=len(gpus), name=t["name"], total_memory_bytes=t["total"],
                          free_memory_bytes=None, compute_capability=t["cc"], driver_version=None,
                          cuda_version=None, utilization_percent=None, temperature_c=None,
                          usable_by_torch=False, bf16=False,
                          notes=["seen by torch only: NVML metrics unavailable"])
            gpus.append(gpu)
        else:
            free.remove(gpu)
        _mark_usable(gpu, t)
    for gpu in gpus:
        if not gpu.usable_by_torch and torch_gpus:
            gpu.notes.append("not visible to torch (CUDA_VISIBLE_DEVICES?)")


def _mark_usable(gpu: GpuInfo, t: dict) -> None:
    import torch

    gpu.usable_by_torch = True
    gpu.torch_index = t["index"]
    gpu.compute_capability = gpu.compute_capability or t["cc"]
    gpu.total_memory_bytes = gpu.total_memory_bytes or t["total"]
    # torch's own answer, without emulation: compute capability >= 8.0 on a CUDA
    # build; is_bf16_supported() asks about the current device, so apply its
    # rule to each device and confirm it on the current one
    gpu.bf16 = t["cc"] >= (8, 0)
    if t["index"] == _safe(torch.cuda.current_device, 0):
        gpu.bf16 = gpu.bf16 and bool(_safe(torch.cuda.is_bf16_supported, False, False))


def _visible_devices() -> list[int] | None:
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:      # UUIDs or MIG names: matched by UUID instead
        return None


def _not_usable_reason(gpus: list[GpuInfo], torch_cuda: str | None) -> str:
    names = ", ".join(g.name for g in gpus)
    driver_cuda = gpus[0].cuda_version
    if torch_cuda is None:
        return (f"GPU seen by NVML but not usable by this torch build ({names}): torch is a "
                f"CPU-only build; install a CUDA build, e.g. pip install torch --index-url "
                f"https://download.pytorch.org/whl/{_wheel_tag(driver_cuda)}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not _visible_devices():
        return (f"GPU seen by NVML but not usable by this torch build ({names}): "
                f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")
    if driver_cuda and _version(driver_cuda) < _version(torch_cuda):
        return (f"GPU seen by NVML but not usable by this torch build ({names}): torch needs "
                f"CUDA {torch_cuda} but the driver supports CUDA {driver_cuda}; update the NVIDIA "
                f"driver, or install torch built for CUDA <= {driver_cuda} "
                f"(https://download.pytorch.org/whl/{_wheel_tag(driver_cuda)})")
    return (f"GPU seen by NVML but not usable by this torch build ({names}): torch (CUDA "
            f"{torch_cuda}) failed to initialise CUDA; check `python -c \"import torch; "
            f"torch.cuda.init()\"` for the cause")


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(".")[:2])
    except ValueError:
        return (0,)


def _wheel_tag(driver_cuda: str | None) -> str:
    """The newest PyTorch CUDA wheel the driver can run."""
    have = _version(driver_cuda) if driver_cuda else (12, 8)
    for tag in ((12, 8), (12, 6), (12, 4), (12, 1), (11, 8)):
        if have >= tag:
            return f"cu{tag[0]}{tag[1]}"
    return "cu118"


def _arch_note(cc: tuple[int, int], archs: list[str]) -> str | None:
    """Whether this torch build ships kernels for the GPU: a cubin sm_XY runs on
    X.Z for Z >= Y; PTX compute_XY compiles for anything >= X.Y."""
    if not archs:
        return None
    for arch in archs:
        kind, _, num = arch.partition("_")
        if not num.isdigit():
            continue
        major, minor = int(num[:-1]), int(num[-1])
        if kind == "sm" and major == cc[0] and minor <= cc[1]:
            return None
        if kind == "compute" and (major, minor) <= cc:
            return None
    return (f"this torch build has no kernels for compute capability {cc[0]}.{cc[1]} "
            f"(it has {' '.join(archs)}); install a torch build that supports this GPU")
