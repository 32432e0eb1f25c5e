"""Device and precision choices: facts from the hardware boundary, never from names."""

import pytest
import torch

from conftest import read_jsonl
from llmtui import load_config
from llmtui.engine.planning import cpu, device
from llmtui.engine.training.trainer import Trainer


@pytest.fixture
def plain_cpu(monkeypatch):
    """A CPU without bf16/fp16 matrix instructions (the /proc/cpuinfo boundary)."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


@pytest.mark.unit
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cpu_without_native_half_precision_falls_back_to_fp32(plain_cpu, precision):
    placement = device.place("cpu", precision)
    assert placement.precision == "fp32"
    assert len(placement.warnings) == 1 and f'"{precision}"' in placement.warnings[0]
    assert "fp32" in placement.warnings[0]


@pytest.mark.unit
def test_cpu_with_native_bf16_keeps_it(bf16_cpu):
    placement = device.place("cpu", "bf16")
    assert placement.precision == "bf16" and not placement.warnings
    assert placement.autocast_dtype == torch.bfloat16 and not placement.uses_grad_scaler


@pytest.mark.unit
def test_cuda_requested_without_cuda_warns_and_uses_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    placement = device.place("cuda", "fp32")
    assert placement.device.type == "cpu"
    assert "CUDA" in placement.warnings[0]
    assert device.place("auto", "fp32").device.type == "cpu"


@pytest.mark.train
def test_fallback_warning_reaches_the_run_log(plain_cpu, tiny):
    result = Trainer(load_config("cpu", tiny + ["training.precision=bf16", "training.max_steps=5"])).run()
    events = read_jsonl(result.metrics_path)
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    assert any("bf16" in w and "fp32" in w for w in warnings)
    start = next(e for e in events if e["kind"] == "start")
    assert start["precision"] == "fp32"


@pytest.mark.unit
def test_threads_default_to_physical_cores():
    import psutil
    assert device.configure_threads(0) == (psutil.cpu_count(logical=False) or torch.get_num_threads())
    assert torch.get_num_threads() == device.configure_threads(0)
