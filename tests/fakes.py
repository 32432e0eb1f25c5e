"""Fakes for the app's tests, snapshots and benchmarks: fixed hardware, a
scripted trainer, a fixed memory probe. Nothing here runs in the real app."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from llmtui.engine.training.commands import Command, Stop
from llmtui.engine.training.events import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    EventBuffer,
    SampleEvent,
    StartEvent,
    TrainEvent,
    WarningEvent,
)

T0 = 1_700_000_000.0  # fixed event times: snapshots must not show the clock


def fake_cpu():
    from llmtui.engine.planning.hardware import CpuInfo
    return CpuInfo(model="AMD Ryzen 5 7600 6-Core Processor", physical_cores=6, logical_cores=12,
                   total_ram_bytes=32 * 2**30, available_ram_bytes=27 * 2**30,
                   bf16_native=False, fp16_native=False, flags=["avx", "avx2", "f16c", "fma"])


def fake_hardware_cpu_only():
    """A desktop without an NVIDIA GPU."""
    from llmtui.engine.planning.hardware import HardwareInfo
    return HardwareInfo(cpu=fake_cpu(), gpus=[], torch_version="2.13.0", torch_cuda_available=False,
                        torch_cuda_version=None, torch_device_count=0, warnings=[])


def fake_hardware_rtx4060():
    """The same desktop with one RTX 4060 (8 GB) that torch can use."""
    from llmtui.engine.planning.hardware import GpuInfo, HardwareInfo
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 4060", total_memory_bytes=8188 * 2**20,
                  free_memory_bytes=7800 * 2**20, compute_capability=(8, 9), driver_version="550.54.14",
                  cuda_version="12.4", utilization_percent=None, temperature_c=None,
                  usable_by_torch=True, bf16=True, notes=[], torch_index=0)
    return HardwareInfo(cpu=fake_cpu(), gpus=[gpu], torch_version="2.13.0", torch_cuda_available=True,
                        torch_cuda_version="12.4", torch_device_count=1, warnings=[])


def fixed_memory_probe(device: str) -> list[tuple]:
    if str(device).startswith("cuda"):
        return [("GPU used", "1.2/8.0 GiB")]
    return [("system RAM", "5.1/32.0 GiB")]


def loss_at(step: int) -> float:
    """A plausible, deterministic training curve."""
    return 1.6 + 2.6 * math.exp(-step / 120) + 0.04 * math.sin(step / 7)


def scripted_events(max_steps: int = 600, upto: int = 300, run_dir: str = "checkpoints/demo",
                    device: str = "cpu", precision: str = "fp32") -> list[Event]:
    """The events of a run that reached step `upto` (fixed times, nothing live)."""
    events: list[Event] = []

    def ev(cls, step: int, **fields: Any) -> None:
        events.append(cls(step=step, time=T0 + step * 0.07, **fields))

    ev(StartEvent, 0, run_dir=run_dir, device=device, precision=precision, threads=2,
       n_params=800_640, n_params_non_embedding=783_872, vocab_size=65, max_steps=max_steps,
       tokens_per_step=768, effective_batch=12, world_size=1, train_tokens=1_003_854,
       val_tokens=111_540, data_dir="data/x", data_reused=True, resumed_from=None, start_step=0,
       cpu_cores=4)
    for step in range(10, upto + 1, 10):
        ev(TrainEvent, step, loss=loss_at(step), lr=1e-3 * min(1.0, step / 100),
           grad_norm=0.5 + 0.1 * math.cos(step), tokens_per_sec=12_000.0, ms_per_step=64.0,
           mfu=0.41, tokens_seen=step * 768, max_steps=max_steps, memory_rss_mb=370.0,
           cpu_busy=2.1, cpu_others=0.2)
        if step % 100 == 0:
            val = loss_at(step) + 0.05
            ev(EvalEvent, step, val_loss=val, val_perplexity=math.exp(val), val_accuracy=0.3,
               best_val_loss=val, improved=True, evals_without_improvement=0)
            ev(CheckpointEvent, step, path=f"{run_dir}/best", reason="best")
            ev(SampleEvent, step, prompt="\n", text="ROMEO:\nWhat say you, my lord? the king is come\n"
               "and we shall have it so.")
    ev(WarningEvent, upto, message="this is a scripted run for tests")
    return events


def done_event(**fields: Any) -> DoneEvent:
    """A run's done record: a finished 10-step run without checkpoints, with `fields` instead."""
    record: dict[str, Any] = {
        "step": 10, "time": T0, "final_train_loss": None, "final_val_loss": None, "best_val_loss": None,
        "training_time": 0.0, "steps": 10, "tokens_seen": 0, "stop_reason": "max_steps", "run_dir": "",
        "last_checkpoint": None, "best_checkpoint": None, "metrics_path": "", "n_params": 0, "device": "",
        "precision": ""}
    return DoneEvent(**(record | fields))


class ScriptedTrainer:
    """Stands in for engine.training.trainer.Trainer behind the same protocol
    (TrainerControl): emits a script of events, records the commands it is
    sent, then waits for Stop and finishes like a real run (a done event and a
    result)."""

    def __init__(self, cfg, *, resume_from=None, overwrite=False, prepared=None, events: list[Event] | None = None,
                 finish_at_once: bool = False):
        self.cfg = cfg
        self.events = EventBuffer()
        self.script = events if events is not None else scripted_events()
        self.finish_at_once = finish_at_once
        self.commands: list[Command] = []
        self.emitted = threading.Event()
        self._stop = threading.Event()
        self.result = None

    def send(self, command: Command) -> None:
        self.commands.append(command)
        if isinstance(command, Stop):
            self._stop.set()

    def run(self):
        for e in self.script:
            self.events(e)
        self.emitted.set()
        if not self.finish_at_once:
            self._stop.wait()
        last = self.script[-1].step if self.script else 0
        summary = {"final_train_loss": loss_at(last), "final_val_loss": loss_at(300) + 0.05,
                   "best_val_loss": loss_at(300) + 0.05, "training_time": 21.0, "steps": last,
                   "tokens_seen": last * 768, "stop_reason": "stopped" if self._stop.is_set() else "max_steps",
                   "run_dir": "checkpoints/demo", "last_checkpoint": "checkpoints/demo/last",
                   "best_checkpoint": "checkpoints/demo/best", "metrics_path": "checkpoints/demo/metrics.jsonl",
                   "n_params": 800_640, "device": "cpu", "precision": "fp32"}
        self.events(DoneEvent(step=last, time=T0 + last * 0.07 + 1, **summary))
        self.result = _Result(summary)
        return self.result


class _Result:
    def __init__(self, summary: dict):
        self._summary = summary
        for k, v in summary.items():
            setattr(self, k, v)

    def to_json(self) -> dict:
        return dict(self._summary)


def scripted_factory(**kwargs):
    """A trainer_factory for LlmtuiApp that builds ScriptedTrainers and keeps them."""
    made: list[ScriptedTrainer] = []

    def factory(cfg, *, resume_from=None, overwrite=False, prepared=None):
        trainer = ScriptedTrainer(cfg, resume_from=resume_from, overwrite=overwrite, prepared=prepared, **kwargs)
        made.append(trainer)
        return trainer

    factory.made = made
    return factory


def runs_dir_with_demo(root: Path) -> Path:
    """A runs folder holding one run with a checkpoint at step 1500, for the resume list.

    The checkpoint is written by the engine's own writer, so its manifest is the real
    format (it verifies); the weights are empty files: nothing here loads them."""
    import json

    from llmtui.engine.training.checkpoint import REQUIRED, write_checkpoint_dir

    run = root / "checkpoints" / "shakespeare-char"
    run.mkdir(parents=True, exist_ok=True)
    # nanoGPT's shakespeare-char context: room for the cpu preset's
    config = b"[run]\nname = \"shakespeare-char\"\n\n[model]\nblock_size = 256\n"
    (run / "config.toml").write_bytes(config)
    files = dict.fromkeys(REQUIRED, b"") | {"config.toml": config,
                                           "state.json": json.dumps({"step": 1500}).encode()}
    write_checkpoint_dir(run / "last", files)
    return root / "checkpoints"


def fixed_recommendation(hardware):
    """engine.recommend's answer for the fake machines, with fixed reasons (the
    real ones mention this machine's NVML state), for machine-independent snapshots."""
    import copy

    from llmtui.engine.config.loading import load_config
    from llmtui.engine.planning.estimate import estimate
    from llmtui.engine.planning.recommend import Recommendation

    if hardware.gpus:
        preset, device = "rtx4060", "cuda:0"
        reasons = ["NVIDIA GeForce RTX 4060: 8.0 GiB, compute capability 8.9 -> the 8 GB tier",
                   "runs bf16 natively: mixed precision bf16, no loss scaling",
                   "micro-batch 8 x 8 accumulation = 32,768 tokens per optimizer step"]
        settings = {"training.precision": "bf16", "training.batch_size": 8,
                    "training.grad_accum_steps": 8}
    else:
        preset, device = "cpu", "cpu"
        reasons = ["no NVIDIA GPU found: training on the CPU",
                   "no native bf16/fp16 matrix instructions: fp32",
                   "6 physical CPU cores: run.threads = 6"]
        settings = {"training.precision": "fp32", "run.threads": 6}
    cfg = load_config(preset)
    tuned = copy.deepcopy(cfg)
    for key, value in settings.items():
        section, name = key.split(".")
        setattr(getattr(tuned, section), name, value)
    from llmtui.engine.planning.recommend import finetune_proposal

    finetune, why = finetune_proposal(hardware.gpus[0] if hardware.gpus else None)
    return Recommendation(preset=preset, reasons=reasons, device=device, settings=settings,
                          estimate=estimate(tuned, hardware=hardware), finetune_preset=finetune,
                          finetune_reason=why)


def static_text(widget) -> str:
    """The plain text a Static shows (str, rich Text or any rich renderable)."""
    content = widget.content
    if isinstance(content, str):
        return content
    plain = getattr(content, "plain", None)
    if isinstance(plain, str):
        return plain
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(content)
    return console.export_text()
