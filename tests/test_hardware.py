"""Hardware detection and preset picking, with fakes only at the NVML and
torch.cuda boundaries (the pynvml module's functions, torch.cuda's queries)
and at /proc/cpuinfo's flags. Everything between them and the recommendation
is the real engine code."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pynvml
import pytest
import torch

from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.planning import cpu as planning_cpu
from llmtui.engine.planning import hardware as hw
from llmtui.engine.planning.recommend import recommend

MiB = 2**20
GTX1660S = {"name": "NVIDIA GeForce GTX 1660 SUPER", "mib": 6144, "cc": (7, 5), "uuid": "GPU-aaaa-1660"}
RTX4060 = {"name": "NVIDIA GeForce RTX 4060", "mib": 8188, "cc": (8, 9), "uuid": "GPU-bbbb-4060"}
RTX3090 = {"name": "NVIDIA GeForce RTX 3090", "mib": 24576, "cc": (8, 6), "uuid": "GPU-cccc-3090"}
AVX2_ONLY = frozenset({"avx", "avx2", "fma", "f16c"})


@pytest.fixture(autouse=True)
def fresh_detection(monkeypatch):
    """Each test detects from scratch, on a CPU with AVX2 only (no native bf16)."""
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hw._cache.clear()
    hw._reset_nvml()
    yield
    hw._cache.clear()
    hw._reset_nvml()


def fake_nvml(monkeypatch, gpus, *, init_error=None, unsupported=(), driver_cuda=12040):
    """pynvml answering for `gpus`; metrics named in `unsupported` raise NotSupported."""
    calls = {"init": 0}

    def init():
        calls["init"] += 1
        if init_error is not None:
            raise init_error

    def handle(i):
        if i >= len(gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return gpus[i]

    def metric(name, value):
        def fn(h, *args):
            if name in unsupported:
                raise pynvml.NVMLError_NotSupported()
            return value(h)
        return fn

    patches = {
        "nvmlInit": init,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlSystemGetDriverVersion": lambda: "550.54.14",
        "nvmlSystemGetCudaDriverVersion": lambda: driver_cuda,
        "nvmlDeviceGetName": metric("name", lambda h: h["name"]),
        "nvmlDeviceGetMemoryInfo": metric("memory", lambda h: SimpleNamespace(
            total=h["mib"] * MiB, free=h["mib"] * MiB - 300 * MiB, used=300 * MiB)),
        "nvmlDeviceGetCudaComputeCapability": metric("cc", lambda h: h["cc"]),
        "nvmlDeviceGetUtilizationRates": metric("utilization", lambda h: SimpleNamespace(gpu=3, memory=1)),
        "nvmlDeviceGetTemperature": metric("temperature", lambda h: 41),
        "nvmlDeviceGetUUID": metric("uuid", lambda h: h["uuid"]),
    }
    for name, fn in patches.items():
        monkeypatch.setattr(pynvml, name, fn)
    return calls


def fake_torch_cuda(monkeypatch, gpus, *, build="12.4"):
    """torch.cuda seeing `gpus` (an empty list: a build or driver that cannot use CUDA)."""
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(gpus))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(
        name=gpus[i]["name"], total_memory=gpus[i]["mib"] * MiB, major=gpus[i]["cc"][0],
        minor=gpus[i]["cc"][1], uuid=gpus[i]["uuid"].removeprefix("GPU-")))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: bool(gpus) and gpus[0]["cc"] >= (8, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list",
                        lambda: ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"])


def machine(monkeypatch, gpus, torch_gpus=None, **nvml_kwargs):
    fake_nvml(monkeypatch, gpus, **nvml_kwargs)
    fake_torch_cuda(monkeypatch, gpus if torch_gpus is None else torch_gpus)
    return hw.detect()


# ---------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("error, words", [
    (pynvml.NVMLError_LibraryNotFound(), "no NVIDIA driver library"),
    (pynvml.NVMLError_DriverNotLoaded(), "driver is not loaded"),
])
def test_no_driver_means_cpu_preset(monkeypatch, error, words):
    fake_nvml(monkeypatch, [], init_error=error)
    fake_torch_cuda(monkeypatch, [], build=None)
    info = hw.detect()
    assert info.gpus == [] and not info.torch_cuda_available
    assert info.cpu.physical_cores >= 1 and info.cpu.total_ram_bytes > 0
    assert not info.cpu.bf16_native and info.cpu.flags == sorted(AVX2_ONLY)
    rec = recommend(info)
    assert rec.preset == "cpu" and rec.device == "cpu"
    assert any(words in r for r in rec.reasons)
    # a CPU: fine-tuning a pretrained model is proposed beside training from scratch
    assert rec.finetune_preset == "finetune-cpu" and "fine-tuned on your text" in rec.finetune_reason
    assert rec.settings["training.precision"] == "fp32"
    assert rec.settings["run.threads"] == info.cpu.physical_cores
    assert rec.settings["training.batch_size"] * rec.settings["training.grad_accum_steps"] == 16   # the preset's
    assert rec.estimate.fits is True
    assert hw.gpu_memory_used(0) is None


@pytest.mark.subprocess
def test_the_hardware_types_import_without_torch():
    """The TUI imports HardwareInfo and its parts for its messages and views; torch
    loads only when detection runs (in a worker)."""
    import subprocess
    import sys
    code = ("import sys; from llmtui.engine.planning.hardware import CpuInfo, GpuInfo, HardwareInfo; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.unit
def test_cpu_with_avx512_bf16_keeps_fp32_and_says_why(monkeypatch):
    flags = AVX2_ONLY | {"avx512f", "avx512_bf16"}
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: flags)
    info = machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    rec = recommend(info)
    assert info.cpu.bf16_native
    assert rec.preset == "cpu" and rec.settings["training.precision"] == "fp32"
    assert any("AVX512_BF16" in r and "no faster" in r for r in rec.reasons)


@pytest.mark.unit
def test_cpu_with_amx_picks_bf16_for_wide_models_only(monkeypatch):
    """AMX runs bf16 matmuls fast, but below AMX_BF16_MIN_WIDTH the casts cost more than
    they save (measured): the cpu preset stays fp32, a wide model gets bf16."""
    from llmtui.engine.planning.autotune import AMX_BF16_MIN_WIDTH

    flags = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: flags)
    info = machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    rec = recommend(info)
    width = load_config("cpu").model.n_embd
    assert width < AMX_BF16_MIN_WIDTH
    assert rec.settings["training.precision"] == "fp32"
    assert any("AMX" in r and f"{width} wide" in r and "slower" in r for r in rec.reasons)
    assert rec.estimate.precision == "fp32"
    wide = recommend(info, overrides=[f"model.n_embd={AMX_BF16_MIN_WIDTH}"])
    assert wide.settings["training.precision"] == "bf16"
    assert any("AMX" in r and "mixed precision bf16" in r for r in wide.reasons)
    assert wide.estimate.precision == "bf16"


@pytest.mark.unit
def test_auto_precision_stays_auto_and_is_planned_as_it_will_run(monkeypatch):
    """A config with training.precision = "auto" keeps it (the trainer picks at the start,
    on whatever device it meets); the plan says why and estimates the format it picks."""
    from llmtui.engine.planning.cpu import AMX_BF16_MIN_WIDTH

    flags = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: flags)
    info = machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    narrow = recommend(info, overrides=['training.precision="auto"'])
    assert narrow.settings["training.precision"] == "auto" and narrow.estimate.precision == "fp32"
    assert any(r.startswith('training.precision = "auto": the CPU has AMX') for r in narrow.reasons)
    wide = recommend(info, overrides=['training.precision="auto"', f"model.n_embd={AMX_BF16_MIN_WIDTH}"])
    assert wide.settings["training.precision"] == "auto" and wide.estimate.precision == "bf16"
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: AVX2_ONLY)
    hw._cache.clear()
    plain = recommend(machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound()),
                      overrides=['training.precision="auto"', f"model.n_embd={AMX_BF16_MIN_WIDTH}"])
    assert plain.estimate.precision == "fp32"
    assert not any("runs it as" in r for r in plain.reasons + plain.warnings)


@pytest.mark.unit
def test_the_users_precision_and_threads_are_kept(monkeypatch):
    """`llmtui detect --override training.precision=...` plans with the user's format
    and says so, instead of tuning it away (it listed the override, then bf16)."""
    flags = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: flags)
    info = machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    rec = recommend(info, overrides=['training.precision="bf16"', "run.threads=1"])
    assert rec.settings["training.precision"] == "bf16" and rec.estimate.precision == "bf16"
    assert rec.settings["run.threads"] == 1
    assert any('training.precision = "bf16": your setting' in r for r in rec.reasons)
    assert not any("physical CPU cores" in r for r in rec.reasons)
    # a format this CPU lacks: kept as the user's setting, and the plan says what will run
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: AVX2_ONLY)
    plain = machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    rec = recommend(plain, overrides=["training.precision=fp16"])
    assert rec.settings["training.precision"] == "fp16" and rec.estimate.precision == "fp32"
    assert any("your setting (this device runs it as fp32)" in r for r in rec.reasons)


@pytest.mark.unit
def test_one_gtx1660_super(monkeypatch):
    info = machine(monkeypatch, [GTX1660S])
    gpu, = info.gpus
    assert gpu.name == GTX1660S["name"] and gpu.compute_capability == (7, 5)
    assert gpu.total_memory_bytes == 6144 * MiB and gpu.free_memory_bytes == 5844 * MiB
    assert gpu.driver_version == "550.54.14" and gpu.cuda_version == "12.4"
    assert gpu.utilization_percent == 3 and gpu.temperature_c == 41
    assert gpu.usable_by_torch and gpu.torch_index == 0 and not gpu.bf16
    rec = recommend(info)
    assert rec.preset == "gtx1660" and rec.device == "cuda:0"
    assert rec.finetune_preset == "finetune-gpt2" and "6 GiB of GPU memory" in rec.finetune_reason
    assert rec.settings["training.precision"] == "fp16"      # Turing: no bf16, fp16 + GradScaler
    assert any("7.5" in r and "6 GB" in r for r in rec.reasons)
    assert any("GradScaler" in r for r in rec.reasons)
    s = rec.settings
    assert s["training.batch_size"] * s["training.grad_accum_steps"] == 64  # the preset's 16 x 4
    assert "run.threads" not in s and "run.device" not in s
    assert rec.estimate.fits and rec.estimate.device == "cuda:0" and rec.estimate.precision == "fp16"
    assert hw.gpu_memory_used(0) == (300 * MiB, 6144 * MiB)


@pytest.mark.unit
def test_one_rtx4060(monkeypatch):
    info = machine(monkeypatch, [RTX4060])
    assert info.gpus[0].bf16
    rec = recommend(info)
    assert rec.preset == "rtx4060"
    assert rec.finetune_preset == "finetune-gpt2"          # 8 GB is still small
    assert rec.settings["training.precision"] == "bf16"
    assert any("8.9" in r and "8 GB tier" in r for r in rec.reasons)
    s = rec.settings
    assert s["training.batch_size"] * s["training.grad_accum_steps"] == 64   # 32k tokens per step
    assert rec.estimate.memory_total <= 0.85 * rec.estimate.device_memory
    assert rec.estimate.step_seconds > 0 and rec.estimate.total_seconds > 0


@pytest.mark.unit
def test_two_different_gpus_plan_for_the_bigger_one(monkeypatch):
    info = machine(monkeypatch, [RTX4060, RTX3090])
    assert [g.torch_index for g in info.gpus] == [0, 1]
    rec = recommend(info)
    assert rec.preset == "rtx4090" and rec.device == "cuda:1"
    assert rec.finetune_preset is None and rec.finetune_reason == ""   # 24 GB: not small
    assert rec.settings["run.device"] == "cuda:1"
    assert any("2 usable GPUs" in r and "cuda:1" in r and "RTX 3090" in r for r in rec.reasons)
    assert rec.settings["training.precision"] == "bf16"
    assert rec.estimate.device == "cuda:1" and rec.estimate.fits


@pytest.mark.unit
def test_metric_not_supported_shows_as_unavailable(monkeypatch):
    info = machine(monkeypatch, [RTX4060], unsupported={"temperature", "utilization"})
    gpu = info.gpus[0]
    assert gpu.temperature_c is None and gpu.utilization_percent is None
    assert gpu.total_memory_bytes == 8188 * MiB and gpu.usable_by_torch
    assert any("temperature: unavailable (not supported" in n for n in gpu.notes)
    assert recommend(info).preset == "rtx4060"
    assert json.dumps(info.to_json())       # still serialisable


@pytest.mark.unit
def test_memory_not_supported_falls_back_to_torch(monkeypatch):
    info = machine(monkeypatch, [RTX4060], unsupported={"memory"})
    gpu = info.gpus[0]
    assert gpu.free_memory_bytes is None and gpu.total_memory_bytes == 8188 * MiB
    assert recommend(info).preset == "rtx4060"


@pytest.mark.unit
def test_gpu_seen_by_nvml_but_cpu_only_torch(monkeypatch):
    fake_nvml(monkeypatch, [RTX4060])
    fake_torch_cuda(monkeypatch, [], build=None)
    info = hw.detect()
    assert len(info.gpus) == 1 and not info.gpus[0].usable_by_torch
    warning, = info.warnings
    assert "not usable by this torch build" in warning and "CPU-only" in warning
    assert "download.pytorch.org/whl/cu124" in warning        # matches the driver's CUDA 12.4
    rec = recommend(info)
    assert rec.preset == "cpu" and rec.device == "cpu"
    assert any("not usable by this torch build" in r for r in rec.reasons)


@pytest.mark.unit
def test_driver_older_than_torch_cuda(monkeypatch):
    fake_nvml(monkeypatch, [RTX4060], driver_cuda=11040)
    fake_torch_cuda(monkeypatch, [], build="12.8")
    info = hw.detect()
    assert "driver supports CUDA 11.4" in info.warnings[0] and "torch needs CUDA 12.8" in info.warnings[0]
    assert recommend(info).preset == "cpu"


@pytest.mark.unit
def test_torch_build_without_kernels_for_the_gpu(monkeypatch):
    fake_nvml(monkeypatch, [RTX4060])
    fake_torch_cuda(monkeypatch, [RTX4060])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_50", "sm_60", "sm_70"])
    info = hw.detect()
    assert not info.gpus[0].usable_by_torch
    assert any("no kernels for compute capability 8.9" in n for n in info.gpus[0].notes)
    assert recommend(info).preset == "cpu"


@pytest.mark.unit
def test_torch_sees_a_subset_matched_by_uuid(monkeypatch):
    """CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is NVML's GPU 1."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    info = machine(monkeypatch, [RTX4060, GTX1660S], torch_gpus=[GTX1660S])
    first, second = info.gpus
    assert not first.usable_by_torch and first.torch_index is None
    assert second.usable_by_torch and second.torch_index == 0
    rec = recommend(info)
    assert rec.preset == "gtx1660" and rec.device == "cuda:0"
    assert rec.finetune_preset == "finetune-gpt2" and "6 GiB of GPU memory" in rec.finetune_reason


@pytest.mark.unit
def test_nvml_initialised_once_and_refresh(monkeypatch):
    calls = fake_nvml(monkeypatch, [RTX4060])
    fake_torch_cuda(monkeypatch, [RTX4060])
    first = hw.detect()
    assert hw.detect() is first
    hw.gpu_memory_used(0)
    assert calls["init"] == 1
    assert hw.detect(refresh=True) is not first
    assert calls["init"] == 2


@pytest.mark.unit
def test_detect_json_cli(monkeypatch, capsys):
    machine(monkeypatch, [GTX1660S])
    assert main(["detect", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "gtx1660"
    assert isinstance(out["reasons"], list) and all(isinstance(r, str) for r in out["reasons"])
    assert out["cpu"]["physical_cores"] >= 1
    assert out["gpus"][0]["compute_capability"] == "7.5"
    assert out["settings"]["training.precision"] == "fp16"
    assert out["estimate"]["memory_total"] > 0


@pytest.mark.unit
def test_detect_text_cli(monkeypatch, capsys):
    machine(monkeypatch, [RTX4060], unsupported={"temperature"})
    assert main(["detect"]) == 0
    out = capsys.readouterr().out
    for words in ("NVIDIA GeForce RTX 4060", "compute capability 8.9", "Preset   rtx4060",
                  'training.precision = "bf16"', "peak memory", "parameters", "n/a"):
        assert words in out, words


@pytest.mark.unit
def test_detect_planned_gpu_cli(monkeypatch, capsys):
    machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    assert main(["detect", "--json", "--gpu", "RTX 4060"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "rtx4060" and out["settings"]["training.precision"] == "bf16"
    assert main(["detect", "--json", "--gpu", "Mystery:24:8.6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "rtx4090" and out["estimate"]["step_seconds"] is None


@pytest.mark.unit
@pytest.mark.parametrize("spec", ["Mystery", "RTX 4060:lots", "Mystery:12:8", "A:1:2:3"])
def test_detect_bad_gpu_is_one_line_exit_2(monkeypatch, capsys, spec):
    machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    assert main(["detect", "--gpu", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NAME:VRAM_GB" in err and "Traceback" not in err


@pytest.mark.unit
def test_detect_planned_gpu_by_short_name(monkeypatch, capsys):
    """A card's model number alone names it ('3060' is the RTX 3060, not the 3060 Ti); a
    name two cards share ('A100': 40GB and 80GB) is one line naming both, exit 2."""
    machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    assert main(["detect", "--json", "--gpu", "3060"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "rtx3060" and out["estimate"]["device_memory"] == 12 * 2**30
    assert main(["detect", "--gpu", "A100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and '"A100 40GB" or "A100 80GB"' in err and "Traceback" not in err
    assert main(["detect", "--json", "--gpu", "A100 80GB"]) == 0


@pytest.mark.train
def test_detect_calibrate_times_real_steps(monkeypatch, capsys):
    machine(monkeypatch, [], init_error=pynvml.NVMLError_LibraryNotFound())
    assert main(["detect", "--json", "--calibrate"]) == 0
    est = json.loads(capsys.readouterr().out)["estimate"]
    assert est["calibrated"] and est["step_seconds"] > 0
    assert main(["detect", "--calibrate", "--gpu", "RTX 4060"]) == 2
    assert "--calibrate" in capsys.readouterr().err
