"""Apple GPUs (run.device = "mps"), through a thin fake at the torch.backends.mps and
torch.mps boundary only: what torch says it can do. Everything from there to the
placement, the hardware screen, `llmtui detect` and the recommended preset is the real code.
Unmeasured on a real Mac (README)."""

from __future__ import annotations

import json
import sys

import pynvml
import pytest
import torch

from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.errors import ConfigError
from llmtui.engine.planning import cpu as planning_cpu
from llmtui.engine.planning import device as planning_device
from llmtui.engine.planning import hardware as hw
from llmtui.engine.planning.recommend import recommend
from llmtui.engine.planning.sizing import target_for

GiB = 2**30


@pytest.fixture(autouse=True)
def fresh_detection(monkeypatch):
    monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: frozenset({"asimd"}))    # an Apple CPU
    def no_driver():                                       # a Mac: no NVIDIA driver
        raise pynvml.NVMLError_LibraryNotFound()
    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    hw._cache.clear()
    hw._reset_nvml()
    planning_device.resolve_device.cache_clear()     # an earlier test's answer for "auto"
    yield
    hw._cache.clear()
    hw._reset_nvml()
    planning_device.resolve_device.cache_clear()


def apple_gpu(monkeypatch, *, macos14=True, available=True):
    """torch.backends.mps / torch.mps answering as on an M2 Pro Mac."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: available)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14 or major < 14)
    monkeypatch.setattr(torch.backends.mps, "get_name", lambda: "Apple M2 Pro")
    monkeypatch.setattr(torch.backends.mps, "get_core_count", lambda: 19)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 21 * GiB)
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "1")


@pytest.mark.unit
def test_schema_takes_mps_and_names_it_when_refusing():
    assert load_config("cpu", ['run.device="mps"']).run.device == "mps"
    with pytest.raises(ConfigError, match="run.device.*mps"):
        load_config("cpu", ['run.device="metal"'])


@pytest.mark.unit
def test_mps_places_bf16_on_macos_14_and_auto_picks_it(monkeypatch):
    apple_gpu(monkeypatch)
    p = planning_device.place("mps", "bf16")
    assert p.device.type == "mps" and p.precision == "bf16" and not p.warnings
    assert not p.uses_grad_scaler and p.autocast_dtype == torch.bfloat16
    assert planning_device.place("auto", "fp32").device.type == "mps"
    fp16 = planning_device.place("mps", "fp16")
    assert fp16.precision == "fp16" and fp16.uses_grad_scaler


@pytest.mark.unit
def test_bf16_before_macos_14_falls_back_to_fp16_with_loss_scaling(monkeypatch):
    apple_gpu(monkeypatch, macos14=False)
    p = planning_device.place("mps", "bf16")
    assert p.precision == "fp16" and p.uses_grad_scaler
    assert len(p.warnings) == 1 and "macOS 14" in p.warnings[0]


@pytest.mark.unit
def test_mps_without_an_apple_gpu_trains_on_cpu_and_says_so(monkeypatch):
    apple_gpu(monkeypatch, available=False)
    p = planning_device.place("mps", "fp32")
    assert p.device.type == "cpu" and "Apple GPU" in p.warnings[0]
    assert planning_device.place("auto", "fp32").device.type == "cpu"


@pytest.mark.unit
def test_op_fallback_to_cpu_is_set_on_macos_and_warned_about_when_off(monkeypatch):
    import llmtui

    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    llmtui._enable_mps_fallback()
    import os
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")   # the user's choice is kept
    llmtui._enable_mps_fallback()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"
    apple_gpu(monkeypatch)
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")
    assert any("PYTORCH_ENABLE_MPS_FALLBACK" in w for w in planning_device.place("mps", "fp16").warnings)


@pytest.mark.unit
def test_detection_recommends_the_mac_preset(monkeypatch, capsys):
    apple_gpu(monkeypatch)
    info = hw.detect()
    assert info.mps is not None and info.mps.name == "Apple M2 Pro" and info.mps.bf16
    assert info.mps.memory_bytes == 21 * GiB and info.mps.cores == 19
    rec = recommend(info)
    assert rec.preset == "mps" and rec.device == "mps"
    assert any("Apple GPU Apple M2 Pro" in r and "unmeasured" in r for r in rec.reasons)
    assert rec.estimate.device == "mps" and rec.estimate.device_memory == 21 * GiB
    assert target_for("auto", "bf16", info).kind == "mps"
    assert main(["detect", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "mps" and out["mps"]["name"] == "Apple M2 Pro"
    assert main(["detect"]) == 0
    assert "Apple    Apple M2 Pro, 19 GPU cores" in capsys.readouterr().out


@pytest.mark.unit
def test_hardware_screen_shows_the_apple_gpu(monkeypatch):
    from rich.console import Console

    from llmtui.tui.widgets.hardware_view import hardware_renderable

    apple_gpu(monkeypatch, macos14=False)
    console = Console(width=100, record=True)
    console.print(hardware_renderable(hw.detect()))
    text = console.export_text()
    assert "Apple GPU" in text and "Apple M2 Pro, 19 cores" in text and "can use it (mps)" in text
    assert "no NVIDIA GPU found" not in text and "bf16 from macOS 14" in text
