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


AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


@pytest.mark.unit
@pytest.mark.parametrize(("flags", "width", "expected"), [
    (AMX, cpu.AMX_BF16_MIN_WIDTH, "bf16"),       # AMX, wide enough: bf16 measured faster
    (AMX, 576, "bf16"),                          # SmolLM2's width (the finetune-cpu preset)
    (AMX, cpu.AMX_BF16_MIN_WIDTH - 1, "fp32"),   # narrower: the casts cost more than AMX saves
    (frozenset({"avx512f", "avx512_bf16"}), 576, "fp32"),   # AVX512_BF16 alone: no faster
    (frozenset({"avx2", "fma"}), 576, "fp32"),
])
def test_auto_precision_on_a_cpu_picks_what_it_runs_fastest(monkeypatch, flags, width, expected):
    """training.precision = "auto" resolves at the start, for the model's width, to a
    format the CPU runs natively: never a warning, never an emulated format."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    placement = device.place("cpu", "auto", width=width)
    assert placement.precision == expected and not placement.warnings


@pytest.mark.unit
@pytest.mark.parametrize(("bf16", "cc", "fsdp", "expected"), [
    (True, (8, 6), False, "bf16"),
    (False, (7, 5), False, "fp16"),     # Turing: fast fp16, no bf16
    (False, (6, 0), False, "fp16"),     # P100
    (False, (6, 1), False, "fp32"),     # consumer Pascal: fp16 at a fraction of fp32
    (False, (7, 5), True, "fp32"),      # sharded training takes no fp16 (loss scaling)
])
def test_auto_precision_on_a_gpu_follows_torchs_answers(monkeypatch, bf16, cc, fsdp, expected):
    """The GPU's facts come from torch.cuda's queries (faked here: no GPU on this machine)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cc)
    assert device.auto_precision(torch.device("cuda", 0), 768, fsdp=fsdp) == expected


@pytest.mark.train
def test_a_run_with_auto_precision_trains_in_the_format_it_picked(monkeypatch, tiny):
    """On an AMX CPU a model 192 wide trains in bf16 autocast under "auto", the start
    event says so, and no fallback warning or AMX hint is given; 96 wide stays fp32."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AMX)
    for width, expected in ((cpu.AMX_BF16_MIN_WIDTH, "bf16"), (96, "fp32")):
        cfg = load_config("cpu", tiny + ['training.precision="auto"', "training.max_steps=2",
                                         f"model.n_embd={width}", "model.n_head=2", "model.n_layer=1",
                                         f'run.name="auto-{width}"'])
        result = Trainer(cfg).run()
        events = read_jsonl(result.metrics_path)
        start = next(e for e in events if e["kind"] == "start")
        assert start["precision"] == expected
        assert not [e for e in events if e["kind"] == "warning" and "precision" in e["message"]]
