"""What hardware detection found, as text (CPU, RAM, each GPU, torch's view),
and the recommended preset with its reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from llmtui.tui.format import fmt_bytes, fmt_count, fmt_duration, fmt_step_time

if TYPE_CHECKING:
    from llmtui.engine.planning.hardware import HardwareInfo
    from llmtui.engine.planning.recommend import Recommendation


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def _grid(label_width: int = 10) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", width=label_width, no_wrap=True)
    grid.add_column(ratio=1)
    return grid


def hardware_renderable(hw: HardwareInfo) -> Group:
    parts: list[Any] = []

    def section(title: str) -> Table:
        if parts:
            parts.append(Text(""))
        parts.append(Text(title, "bold"))
        grid = _grid()
        parts.append(grid)
        return grid

    cpu = hw.cpu
    g = section("CPU")
    g.add_row("model", Text(cpu.model or "unknown"))   # Text: a str cell is markup
    g.add_row("cores", f"{cpu.physical_cores} physical / {cpu.logical_cores} logical")
    g.add_row("RAM", f"{fmt_bytes(cpu.total_ram_bytes)}, {fmt_bytes(cpu.available_ram_bytes)} free")
    g.add_row("native", f"bf16 {_yes(cpu.bf16_native)}, fp16 {_yes(cpu.fp16_native)}")

    mps = getattr(hw, "mps", None)
    if not hw.gpus and mps is None:
        g = section("GPU")
        g.add_row("", Text("no NVIDIA GPU found", "dim"))
    if mps is not None:
        g = section("Apple GPU")
        g.add_row("name", Text(mps.name + (f", {mps.cores} cores" if mps.cores else "")))
        g.add_row("memory", f"{fmt_bytes(mps.memory_bytes)} unified, for torch")
        g.add_row("torch", Text("can use it (mps)", "green"))
        g.add_row("bf16", _yes(mps.bf16) + ("" if mps.bf16 else " (fp16; bf16 from macOS 14)"))
        g.add_row("note", Text("unmeasured: llmtui has not been run on an Apple GPU yet", "dim"))
    for gpu in hw.gpus:
        g = section(f"GPU {gpu.index}")
        g.add_row("name", Text(gpu.name))
        free = f", {fmt_bytes(gpu.free_memory_bytes)} free" if gpu.free_memory_bytes is not None else ""
        g.add_row("memory", f"{fmt_bytes(gpu.total_memory_bytes)}{free}")
        cc = gpu.compute_capability
        g.add_row("compute", f"capability {cc[0]}.{cc[1]}" if cc else "n/a")
        g.add_row("driver", f"{gpu.driver_version or 'n/a'}, CUDA {gpu.cuda_version or 'n/a'}")
        live = []
        if gpu.utilization_percent is not None:
            live.append(f"{gpu.utilization_percent:.0f}% busy")
        if gpu.temperature_c is not None:
            live.append(f"{gpu.temperature_c:.0f} °C")
        if live:
            g.add_row("now", ", ".join(live))
        usable = f"can use it (cuda:{gpu.torch_index})" if gpu.torch_index is not None else "can use it"
        g.add_row("torch", Text(usable if gpu.usable_by_torch else "cannot use it",
                                "green" if gpu.usable_by_torch else "yellow"))
        g.add_row("bf16", _yes(gpu.bf16))
        for note in gpu.notes:
            g.add_row("note", Text(note, "yellow"))

    g = section("PyTorch")
    g.add_row("version", str(hw.torch_version or "not installed"))
    cuda = "yes" if hw.torch_cuda_available else "no (CPU only)"
    if hw.torch_cuda_version:
        cuda += f", CUDA {hw.torch_cuda_version}, {hw.torch_device_count} device"
        cuda += "s" if hw.torch_device_count != 1 else ""
    g.add_row("CUDA", Text(cuda, "green" if hw.torch_cuda_available else ""))
    for warning in hw.warnings:
        g.add_row("warning", Text(warning, "yellow"))
    return Group(*parts)


def recommendation_renderable(rec: Recommendation) -> Group:
    parts: list[Any] = []
    head = Text()
    head.append("Recommended: ", "bold")
    head.append(rec.preset, "bold green")
    head.append(f" on {rec.device}")
    parts.append(head)
    reasons = Table.grid(padding=(0, 1))
    reasons.add_column(width=1, style="dim")
    reasons.add_column(ratio=1)
    for reason in rec.reasons:
        reasons.add_row("•", Text(reason))
    for warning in rec.warnings:
        reasons.add_row(Text("!", "yellow"), Text(warning, "yellow"))
    parts.append(reasons)
    if rec.finetune_preset:
        finetune = Text()
        finetune.append("Or fine-tune: ", "bold")
        finetune.append(rec.finetune_preset, "bold green")
        finetune.append(f" — {rec.finetune_reason or ''}. Pick it under Another preset.")
        parts.append(finetune)
    if rec.settings:
        parts.append(Text("Tuned for this machine", "bold"))
        settings = Table.grid(padding=(0, 1))
        settings.add_column(ratio=1)
        for key, value in rec.settings.items():
            shown = f'"{value}"' if isinstance(value, str) else str(value).lower() \
                if isinstance(value, bool) else str(value)
            settings.add_row(Text(f"{key} = {shown}"))
        parts.append(settings)
    est = rec.estimate
    if est is not None:
        parts.append(Text("Estimates", "bold"))
        grid = _grid(9)
        grid.add_row("params", fmt_count(est.n_params))
        mem = "~" + fmt_bytes(est.memory_total)
        if est.device_memory:
            mem += f" of {fmt_bytes(est.device_memory)} free"
        grid.add_row("memory", Text(mem, "red" if est.fits is False else ""))
        if est.step_seconds:
            time_text = f"~{fmt_step_time(est.step_seconds)}/step"
            if est.total_seconds:
                time_text += f", ~{fmt_duration(est.total_seconds)} in all"
            grid.add_row("time", time_text)
        parts.append(grid)
    return Group(*parts)


class HardwareView(Static):
    DEFAULT_CSS = "HardwareView { height: auto; }"

    def show(self, hw: HardwareInfo) -> None:
        self.update(hardware_renderable(hw))
