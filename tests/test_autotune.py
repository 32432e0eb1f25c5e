"""Autotune: "auto" batch settings in configs, resolve_auto at run time, and
the settings each preset tier gets on its representative card."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from llmtui.engine.config.loading import config_to_toml, load_config
from llmtui.engine.errors import ConfigError, UserError
from llmtui.engine.planning import autotune as autotune_module
from llmtui.engine.planning.autotune import (
    HEADROOM,
    autotune,
    choose_batch,
    fit_batch,
    resolve_auto,
    smallest_peak,
)
from llmtui.engine.planning.device import place
from llmtui.engine.planning.estimate import estimate
from llmtui.engine.planning.hardware import CpuInfo, HardwareInfo
from llmtui.engine.planning.recommend import TIERS, planned_hardware, recommend
from llmtui.engine.planning.sizing import memory_parts, target_for

GiB = 2**30


def cpu_machine(ram_gib: float = 16) -> HardwareInfo:
    """A 4-core AVX2 CPU without native bf16 and no GPU."""
    cpu = CpuInfo(model="Test CPU", physical_cores=4, logical_cores=8,
                  total_ram_bytes=int(ram_gib * GiB), available_ram_bytes=int(ram_gib * GiB),
                  bf16_native=False, fp16_native=False, flags=["avx", "avx2", "fma"])
    return HardwareInfo(cpu=cpu, gpus=[], torch_version="2.x", torch_cuda_available=False,
                        torch_cuda_version=None, torch_device_count=0, warnings=[])


@pytest.mark.unit
def test_auto_is_accepted_for_batch_settings_only(tmp_path):
    cfg = load_config("cpu", ['training.batch_size="auto"', "training.grad_accum_steps=auto"])
    assert cfg.training.batch_size == "auto" and cfg.training.grad_accum_steps == "auto"
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(cfg))
    again = load_config(path)
    assert again.training.batch_size == "auto"
    with pytest.raises(ConfigError, match="training.max_steps"):
        load_config("cpu", ['training.max_steps="auto"'])
    with pytest.raises(ConfigError, match='or "auto"'):
        load_config("cpu", ["training.batch_size=0"])


@pytest.mark.unit
def test_numbers_are_kept():
    cfg = load_config("cpu")
    target = target_for("cpu", "fp32", cpu_machine())
    assert choose_batch(cfg, 65, target) == (cfg.training.batch_size, 1, [])
    assert cfg.training.batch_size == 16              # the preset's own number, not an "auto" one


@pytest.mark.unit
def test_auto_keeps_the_target_tokens_per_step():
    cfg = load_config("cpu", ['training.batch_size="auto"', 'training.grad_accum_steps="auto"',
                              "training.target_tokens_per_step=4096", "model.block_size=64"])
    roomy = target_for("cpu", "fp32", cpu_machine(ram_gib=64))
    batch, accum, notes = choose_batch(cfg, 65, roomy)
    assert (batch, accum) == (64, 1) and "64 x 1" in notes[0]     # 4096 / 64 tokens per row
    # little memory: a smaller micro-batch, more accumulation, same tokens per step
    tight = target_for("cpu", "fp32", cpu_machine(ram_gib=0.45))
    batch, accum, _ = choose_batch(cfg, 65, tight)
    assert batch < 64 and batch * accum == 64
    assert sum(memory_parts(cfg, batch, 65, tight).values()) <= HEADROOM * tight.memory


@pytest.mark.unit
def test_auto_accumulation_for_a_fixed_batch():
    cfg = load_config("cpu", ["training.batch_size=8", 'training.grad_accum_steps="auto"',
                              "training.target_tokens_per_step=2048", "model.block_size=64"])
    batch, accum, _ = choose_batch(cfg, 65, target_for("cpu", "fp32", cpu_machine()))
    assert (batch, accum) == (8, 4)


@pytest.mark.unit
def test_resolve_auto_on_the_placed_cpu():
    cfg = load_config("cpu", ['training.batch_size="auto"', 'run.device="cpu"'])
    resolved, messages = resolve_auto(cfg, place("cpu", "fp32"), vocab_size=65)
    assert isinstance(resolved.training.batch_size, int) and resolved.training.grad_accum_steps == 1
    assert resolved.training.batch_size == 32           # default aim: 32 sequences, plenty of RAM
    assert cfg.training.batch_size == "auto"             # the caller's config is untouched
    assert any("auto batch" in m for m in messages)
    assert not any("will not fit" in m for m in messages)


@pytest.mark.unit
def test_resolve_auto_warns_when_it_will_not_fit(monkeypatch):
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=200 * 2**20))
    cfg = load_config("cpu", ["training.batch_size=64", "model.n_embd=512", "model.n_head=8"])
    resolved, messages = resolve_auto(cfg, place("cpu", "fp32"), vocab_size=65)
    assert resolved.training.batch_size == 64            # numbers are the user's: kept
    warning, = messages
    assert warning.startswith("will not fit: estimated ") and "GiB > 0.2 GiB available on cpu" in warning


@pytest.mark.unit
def test_resolve_auto_on_cuda_uses_free_device_memory(monkeypatch):
    """The CUDA side of resolve_auto, faked at torch.cuda's memory query."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(7.5 * GiB), 8 * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA GeForce RTX 4060")
    placement = SimpleNamespace(device=torch.device("cuda", 0), precision="bf16")
    cfg = load_config("rtx4060", ['training.batch_size="auto"', 'training.grad_accum_steps="auto"',
                                  "training.target_tokens_per_step=32768"])
    resolved, messages = resolve_auto(cfg, placement, vocab_size=50257)
    t = resolved.training
    assert t.batch_size * t.grad_accum_steps == 64 and 1 <= t.batch_size <= 16
    assert "cuda:0 (NVIDIA GeForce RTX 4060)" in messages[0]


def count_choices(monkeypatch) -> list[tuple[int, int]]:
    """The batches autotune's choose_batch returns from now on, one per call."""
    chosen: list[tuple[int, int]] = []
    real = autotune_module.choose_batch

    def spy(*args, **kwargs):
        batch, accum, notes = real(*args, **kwargs)
        chosen.append((batch, accum))
        return batch, accum, notes
    monkeypatch.setattr(autotune_module, "choose_batch", spy)
    return chosen


@pytest.mark.unit
def test_a_fit_holds_one_choice_and_the_memory_of_its_batch(monkeypatch):
    chosen = count_choices(monkeypatch)
    cfg = load_config("cpu", ['training.batch_size="auto"', 'training.grad_accum_steps="auto"'])
    fit = fit_batch(cfg, place("cpu", "fp32"), vocab_size=65)
    t = fit.config.training
    assert chosen == [(t.batch_size, t.grad_accum_steps)] and fit.notes and fit.warning is None
    assert fit.need == sum(memory_parts(fit.config, t.batch_size, 65, fit.target).values())
    # another process's numbers (or a resumed run's): their memory, nothing chosen again
    other = fit.with_batch(1, 32)
    assert (other.config.training.batch_size, other.config.training.grad_accum_steps) == (1, 32)
    assert other.need == sum(memory_parts(other.config, 1, 65, fit.target).values()) < fit.need
    assert fit.with_batch(t.batch_size, t.grad_accum_steps) is fit and len(chosen) == 1
    # before the data, an "auto" micro-batch is weighed at its smallest, 1; numbers as they are
    assert smallest_peak(cfg, place("cpu", "fp32"), 65)[0] == other.need
    fixed = load_config("cpu", ["training.batch_size=8"])
    assert smallest_peak(fixed, place("cpu", "fp32"), 65)[0] == \
        sum(memory_parts(fixed, 8, 65, fit.target).values())
    assert len(chosen) == 1


REPRESENTATIVE = {"gtx1660": "GTX 1660 SUPER", "rtx4060": "RTX 4060", "rtx3060": "RTX 3060",
                  "rtx4090": "RTX 4090", "a100": "A100 40GB"}


@pytest.mark.unit
@pytest.mark.parametrize("preset, card", REPRESENTATIVE.items())
def test_each_tier_fits_its_card_as_shipped_and_autotuned(preset, card):
    assert preset in [t[0] for t in TIERS]
    hw = planned_hardware(cpu_machine(), card)
    rec = recommend(hw)
    assert rec.preset == preset and rec.device == "cuda:0"
    cfg = load_config(preset)
    shipped = estimate(cfg, hardware=hw)
    assert shipped.fits, f"{preset}.toml as shipped does not fit a {card}"
    # autotune keeps the preset's tokens per optimizer step
    s = rec.settings
    assert s["training.batch_size"] * s["training.grad_accum_steps"] == (
        cfg.training.batch_size * cfg.training.grad_accum_steps)
    assert rec.estimate.fits and rec.estimate.memory_total <= HEADROOM * rec.estimate.device_memory
    assert rec.estimate.tokens_per_step == shipped.tokens_per_step


@pytest.mark.unit
def test_pascal_card_is_capped_and_runs_fp32():
    rec = recommend(planned_hardware(cpu_machine(), "GTX 1080 Ti"))
    assert rec.preset == "rtx4060" and rec.settings["training.precision"] == "fp32"
    assert any("no tensor cores" in r for r in rec.reasons)


@pytest.mark.unit
def test_tiny_gpu_turns_on_gradient_checkpointing_or_warns():
    hw = planned_hardware(cpu_machine(), "Tiny:1.5:8.6")
    rec = recommend(hw)
    assert rec.preset == "gtx1660"
    cfg = load_config("a100")
    settings, reasons, warnings = autotune(cfg, hw, target_for("cuda:0", "bf16", hw))
    assert settings["training.batch_size"] == 1 and "model.gradient_checkpointing" not in settings
    assert warnings and warnings[0].startswith("will not fit")
    # deep and long: one sequence does not fit, with recomputation it does
    hw = planned_hardware(cpu_machine(), "Tiny:2:8.6")
    cfg = load_config("gtx1660", ["model.n_layer=48", "model.block_size=2048", "model.n_embd=256",
                                  "model.n_head=4"])
    settings, reasons, warnings = autotune(cfg, hw, target_for("cuda:0", "bf16", hw))
    assert settings["model.gradient_checkpointing"] is True and not warnings
    assert any("gradient checkpointing" in r for r in reasons)


@pytest.mark.unit
def test_cpu_recommendation_settings_are_valid_overrides():
    rec = recommend(cpu_machine())
    overrides = [f"{k}={v!r}".replace("'", '"') for k, v in rec.settings.items()]
    cfg = load_config(rec.preset, overrides)
    assert cfg.run.threads == 4 and cfg.training.precision == "fp32"


@pytest.mark.train
def test_run_with_auto_batch_resolves_and_records_numbers(tiny, monkeypatch):
    from conftest import read_jsonl
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    chosen = count_choices(monkeypatch)
    cfg = load_config("cpu", tiny + ['training.batch_size="auto"', 'training.grad_accum_steps="auto"',
                                     "training.target_tokens_per_step=128", "training.max_steps=4"])
    result = Trainer(cfg).run()
    resolved = load_config(result.run_dir / "config.toml")
    assert isinstance(resolved.training.batch_size, int)
    assert isinstance(resolved.training.grad_accum_steps, int)
    # chosen once per start, and the run trains (and records) the batch that was chosen
    assert chosen == [(resolved.training.batch_size, resolved.training.grad_accum_steps)]
    events = read_jsonl(result.metrics_path)
    start = next(e for e in events if e["kind"] == "start")
    assert start["tokens_per_step"] == resolved.training.batch_size * \
        resolved.training.grad_accum_steps * 16
    assert any("auto" in e["message"] for e in events if e["kind"] == "warning")
    # a resumed run keeps the numbers it was trained with
    longer = load_config("cpu", tiny + ['training.batch_size="auto"', 'training.grad_accum_steps="auto"',
                                        "training.target_tokens_per_step=128", "training.max_steps=6"])
    again = Trainer(longer, resume_from=True).run()
    assert load_config(again.run_dir / "config.toml").training.batch_size == resolved.training.batch_size


@pytest.mark.train
def test_config_that_will_not_fit_warns(tiny, monkeypatch):
    import psutil

    from conftest import read_jsonl
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    real = psutil.virtual_memory()

    class Tight:  # the OS boundary: a machine with 64 MiB free
        total, available = real.total, 64 * 2**20
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight)
    cfg = load_config("cpu", tiny + ["training.max_steps=2"])
    # far beyond what is free: refused before anything is allocated or written
    with pytest.raises(UserError, match="will not fit.*pass --force"):
        Trainer(cfg).run()
    assert not (Path(cfg.run.out_dir) / "tiny" / "metrics.jsonl").exists()
    # --force trains anyway, and says it will not fit
    result = Trainer(cfg, force=True).run()
    warnings = [e["message"] for e in read_jsonl(result.metrics_path) if e["kind"] == "warning"]
    assert any("will not fit" in w for w in warnings), warnings
