"""Map the machine to a preset, autotune it, and say why.

The rules (README "Estimates" has the table for users):

1. Only GPUs torch can use count. GPUs NVML sees that this torch build cannot
   use are reported with the fix, and the plan falls back to the CPU.
2. With several usable GPUs, plan for the best one: most memory, then native
   bf16, then the newest compute capability (ties: the lowest index).
3. The tier follows that GPU's memory; compute capability then sets the
   precision (bf16 from Ampere, 8.0; fp16 with loss scaling on Volta/Turing
   and P100; fp32 on other Pascal cards, whose fp16 runs at 1/64 rate).
   Cards without tensor cores (compute capability < 7.0) stay at or below the
   8 GB tier whatever their memory: they lack the FLOP/s for bigger models.

   | GPU memory    | preset   | examples                          |
   |---------------|----------|-----------------------------------|
   | no usable GPU | cpu      | laptops, CPU-only torch builds    |
   | < 7 GiB       | gtx1660  | GTX 1660 (SUPER/Ti), RTX 2060 6GB |
   | 7 - 10.5 GiB  | rtx4060  | RTX 4060, 3070, 2080, 3080 10GB   |
   | 10.5 - 20 GiB | rtx3060  | RTX 3060 12GB, 4070, 4080, T4     |
   | 20 - 36 GiB   | rtx4090  | RTX 3090/4090, A10, L4, RTX 5090  |
   | >= 36 GiB     | a100     | A100 40/80GB, A40, L40S, H100     |

4. engine.planning.autotune then fits micro-batch, accumulation, precision and threads
   to the device, keeping the preset's tokens per optimizer step.
5. On a small machine (no usable GPU, or one under FINETUNE_BELOW_GIB) the proposal also
   names a fine-tuning preset: there a pretrained model fine-tuned on the user's text
   beats anything trained from scratch in an evening.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from llmtui.engine.errors import UserError
from llmtui.engine.planning.estimate import Estimate, estimate
from llmtui.engine.planning.sizing import target_for

# (preset, lowest GiB of GPU memory, label)
TIERS = [
    ("a100", 36.0, "40-80 GB datacenter"),
    ("rtx4090", 20.0, "24 GB"),
    ("rtx3060", 10.5, "12-16 GB"),
    ("rtx4060", 7.0, "8 GB"),
    ("gtx1660", 0.0, "6 GB"),
]
NO_TENSOR_CORES_MAX = "rtx4060"
# GPUs with less memory than this (8 GB cards included) and CPUs: fine-tuning is proposed too
FINETUNE_BELOW_GIB = 8.5
FINETUNE_PRESETS = {"cpu": ("finetune-cpu", "SmolLM2-135M"), "gpu": ("finetune-gpt2", "GPT-2 124M")}


@dataclass
class Recommendation:
    preset: str                          # file stem in presets/
    reasons: list[str]
    device: str                          # cpu | cuda:N | mps
    settings: dict[str, object]          # 'section.key' -> autotuned value
    estimate: Estimate
    warnings: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)   # the user's, applied to the preset first
    finetune_preset: str | None = None   # a small machine: the fine-tuning preset proposed too
    finetune_reason: str = ""

    def to_json(self) -> dict:
        return {"preset": self.preset, "device": self.device, "reasons": self.reasons,
                "settings": self.settings, "warnings": self.warnings, "overrides": self.overrides,
                "estimate": self.estimate.to_json(), "finetune_preset": self.finetune_preset,
                "finetune_reason": self.finetune_reason}


def rank(gpu) -> tuple:
    return (gpu.total_memory_bytes, gpu.bf16, gpu.compute_capability or (0, 0), -gpu.index)


def pick_tier(gpu) -> tuple[str, str]:
    """(preset, reason) for a usable GPU, by memory and compute capability."""
    gib = gpu.total_memory_bytes / 2**30
    cc = gpu.compute_capability
    preset, _, label = next(t for t in TIERS if gib >= t[1])
    cc_text = f"compute capability {cc[0]}.{cc[1]}" if cc else "compute capability unknown"
    reason = f"{gpu.name}: {gib:.1f} GiB, {cc_text} -> the {label} tier ({preset}.toml)"
    names = [t[0] for t in TIERS]
    if cc is not None and cc < (7, 0) and names.index(preset) < names.index(NO_TENSOR_CORES_MAX):
        preset = NO_TENSOR_CORES_MAX
        reason += (f"; capped at {preset}.toml: no tensor cores (compute capability < 7.0), "
                   "too slow for the bigger models")
    return preset, reason


def recommend(hardware=None, gpu: str | None = None, overrides: list[str] | tuple = ()) -> Recommendation:
    """The preset for this machine (or for the GPU named by `gpu`, planned
    from engine.gpu_table), with the user's `overrides` (section.key=value, e.g. a
    tokenizer and its vocab size) applied, autotuned, with the reasons and the estimate."""
    from llmtui.engine.config.loading import load_config, override_path
    from llmtui.engine.planning.hardware import detect

    hardware = hardware or detect()
    reasons: list[str] = []
    if gpu is not None:
        hardware = planned_hardware(hardware, gpu)
        reasons.append(f"planning for {hardware.gpus[0].name} as you asked (--gpu), not for "
                       "this machine's GPUs")
    usable = sorted(hardware.usable_gpus(), key=rank, reverse=True)
    unusable = [g for g in hardware.gpus if not g.usable_by_torch]

    if usable:
        best = usable[0]
        preset, why = pick_tier(best)
        device = f"cuda:{best.torch_index}"
        if len(usable) > 1:
            others = ", ".join(f"{g.torch_index}: {g.name}" for g in usable[1:])
            reasons.append(f"{len(usable)} usable GPUs; planning for cuda:{best.torch_index} "
                           f"({best.name}), the one with the most memory (others: {others}); "
                           "train on all of them with torchrun (data-parallel)")
        reasons.append(why)
    elif hardware.mps is not None:
        m = hardware.mps
        preset, device = "mps", "mps"
        reasons.append(f"Apple GPU {m.name}" + (f" ({m.cores} cores)" if m.cores else "")
                       + f", {m.memory_bytes / 2**30:.1f} GiB of unified memory for torch, bf16 "
                       + ("yes" if m.bf16 else "no (fp16)") + " -> mps.toml (unmeasured: llmtui has not "
                       "been run on an Apple GPU yet)")
    else:
        preset, device = "cpu", "cpu"
        if unusable:
            seen = [w for w in hardware.warnings if w.startswith("GPU seen by NVML")]
            reasons.append(seen[0] if seen else
                           f"{unusable[0].name} is not usable by torch: training on the CPU")
        else:
            from llmtui.engine.planning.hardware import nvml_error
            nvml_why = nvml_error() if gpu is None else None
            reasons.append("no NVIDIA GPU found" + (f" ({nvml_why})" if nvml_why else "")
                           + ": training on the CPU")
        cpu = hardware.cpu
        reasons.append(f"CPU: {cpu.model}, {cpu.physical_cores} physical / {cpu.logical_cores} "
                       f"logical cores, {cpu.total_ram_bytes / 2**30:.1f} GiB RAM "
                       f"({cpu.available_ram_bytes / 2**30:.1f} GiB free) -> cpu.toml")

    from llmtui.engine.planning.autotune import autotune

    cfg = load_config(preset, overrides)
    if overrides:
        reasons.append(f"with your settings: {', '.join(overrides)}")
    if device not in ("cpu", "cuda:0", "mps"):
        cfg.run.device = device
    target = target_for(cfg.run.device if device != "cpu" else "cpu", cfg.training.precision,
                        hardware, width=cfg.model.n_embd)
    # the keys the user set are planned with, not tuned over
    keep = frozenset(override_path(o) for o in overrides)
    settings, more, warnings = autotune(cfg, hardware, target, keep=keep)
    if device not in ("cpu", "cuda:0", "mps"):
        settings = {"run.device": device, **settings}
    reasons += more
    tuned = copy.deepcopy(cfg)
    for key, value in settings.items():
        section, name = key.split(".")
        setattr(getattr(tuned, section), name, value)
    est = estimate(tuned, hardware=hardware)
    # hardware warnings already given as a reason are not repeated
    warnings = [w for w in hardware.warnings if w not in reasons] + warnings
    finetune, why_finetune = finetune_proposal(usable[0] if usable else None)
    return Recommendation(preset=preset, reasons=reasons, device=device, settings=settings,
                          estimate=est, warnings=warnings, overrides=list(overrides),
                          finetune_preset=finetune, finetune_reason=why_finetune)


def finetune_proposal(gpu) -> tuple[str | None, str]:
    """(preset, why) of fine-tuning for a machine whose best usable GPU is `gpu` (None: the
    CPU), when it is small; (None, "") otherwise."""
    if gpu is None:
        preset, model = FINETUNE_PRESETS["cpu"]
        where = "on a CPU"
    elif gpu.total_memory_bytes / 2**30 < FINETUNE_BELOW_GIB:
        preset, model = FINETUNE_PRESETS["gpu"]
        where = f"with {gpu.total_memory_bytes / 2**30:.0f} GiB of GPU memory"
    else:
        return None, ""
    return preset, (f"{where}, a pretrained model ({model}, downloaded once from Hugging Face) "
                    "fine-tuned on your text beats anything trained from scratch here")


# ---------------------------------------------------------------------------
# --gpu: plan for a card this machine does not have

GPU_SPEC_HELP = ('give a known card ("RTX 4060"), or its memory as "NAME:VRAM_GB" '
                 '(e.g. "My GPU:12"), optionally with compute capability "NAME:VRAM_GB:CC" '
                 '(e.g. "My GPU:12:8.6")')


def parse_gpu_spec(text: str):
    """A GpuInfo for `--gpu NAME[:VRAM_GB[:CC]]`, from the table of known cards."""
    from llmtui.engine.planning.gpu_table import cards_named, find_gpu, tokens
    from llmtui.engine.planning.hardware import GpuInfo

    parts = [p.strip() for p in text.split(":")]
    name = parts[0]
    if not name or len(parts) > 3:
        raise UserError(f"--gpu {text!r}: {GPU_SPEC_HELP}")
    known = find_gpu(name)
    if known is None and len(parts) == 1:
        # a short name: the card it names with least added ('3060' -> RTX 3060, not RTX 3060
        # Ti); where two are as close ('A100': 40GB and 80GB) the user says which
        family = cards_named(name)
        shortest = min((len(tokens(gpu.name)) for gpu in family), default=0)
        closest = [gpu for gpu in family if len(tokens(gpu.name)) == shortest]
        if len(closest) == 1:
            known = closest[0]
        elif family:
            listed = " or ".join(f'"{gpu.name}"' for gpu in family[:4])
            raise UserError(f"--gpu {text!r}: more than one known card: {listed}; give its full name, "
                            f'or its memory as "NAME:VRAM_GB"')
    try:
        memory_gb = float(parts[1]) if len(parts) > 1 and parts[1] else None
        cc_text = parts[2] if len(parts) > 2 else ""
        cc = tuple(int(x) for x in cc_text.split(".")) if cc_text else None
    except ValueError:
        raise UserError(f"--gpu {text!r}: VRAM_GB must be a number and CC like 8.6; "
                        f"{GPU_SPEC_HELP}") from None
    if cc is not None and len(cc) != 2:
        raise UserError(f"--gpu {text!r}: CC must look like 8.6; {GPU_SPEC_HELP}")
    if memory_gb is not None and not 0.5 <= memory_gb <= 4096:
        raise UserError(f"--gpu {text!r}: VRAM_GB must be between 0.5 and 4096")
    if memory_gb is None:
        if known is None:
            raise UserError(f"--gpu {text!r}: not a known card; {GPU_SPEC_HELP}")
        memory_gb = known.memory_gb
    if cc is None and known is not None:
        cc = known.compute_capability
    shown = known.name if known is not None and len(parts) == 1 else name
    return GpuInfo(index=0, name=shown, total_memory_bytes=int(memory_gb * 2**30),
                   free_memory_bytes=None, compute_capability=cc, driver_version=None,
                   cuda_version=None, utilization_percent=None, temperature_c=None,
                   usable_by_torch=True, bf16=cc is not None and cc >= (8, 0),
                   notes=["planned (--gpu), not detected"], torch_index=0)


def planned_hardware(hardware, text: str):
    """This machine's CPU with the named GPU in place of its own."""
    planned = copy.copy(hardware)
    planned.gpus = [parse_gpu_spec(text)]
    planned.warnings = []
    return planned


# ---------------------------------------------------------------------------
# `llmtui detect` as text

def _size(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def _seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def report_text(hardware, rec: Recommendation) -> str:
    """What `llmtui detect` prints: hardware, preset, reasons, settings, estimates."""
    cpu = hardware.cpu
    yes = {True: "yes", False: "no"}
    lines = [(f"CPU      {cpu.model}: {cpu.physical_cores} physical / {cpu.logical_cores} logical "
              f"cores, {_size(cpu.total_ram_bytes)} RAM ({_size(cpu.available_ram_bytes)} free)"),
             (f"         native bf16: {yes[cpu.bf16_native]}, native fp16: {yes[cpu.fp16_native]} "
              f"(flags: {' '.join(cpu.flags) or 'none'})")]
    if not hardware.gpus:
        from llmtui.engine.planning.hardware import nvml_error
        why = nvml_error()
        lines.append("GPU      none found" + (f" ({why})" if why else ""))
    for g in hardware.gpus:
        cc = f"{g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else "n/a"
        util = "n/a" if g.utilization_percent is None else f"{g.utilization_percent:.0f}%"
        temp = "n/a" if g.temperature_c is None else f"{g.temperature_c:.0f} C"
        lines.append(f"GPU {g.index:<4} {g.name}: {_size(g.total_memory_bytes)} "
                     f"({_size(g.free_memory_bytes)} free), compute capability {cc}, driver "
                     f"{g.driver_version or 'n/a'}, CUDA {g.cuda_version or 'n/a'}, busy {util}, {temp}")
        usable = f"yes, as cuda:{g.torch_index}" if g.usable_by_torch else "no"
        lines.append(f"         usable by torch: {usable}; native bf16: {yes[g.bf16]}")
        lines += [f"         note: {n}" for n in g.notes]
    if hardware.mps is not None:
        m = hardware.mps
        lines.append(f"Apple    {m.name}" + (f", {m.cores} GPU cores" if m.cores else "")
                     + f", {_size(m.memory_bytes)} unified memory for torch; usable by torch: yes, "
                     f"as mps; bf16: {yes[m.bf16]}")
    cuda = (f"CUDA {hardware.torch_cuda_version}, {hardware.torch_device_count} device(s) usable"
            if hardware.torch_cuda_version else "CPU-only build")
    lines.append(f"torch    {hardware.torch_version} ({cuda})")
    lines += ["", f"Preset   {rec.preset}  (device {rec.device})"]
    lines += [f"  - {r}" for r in rec.reasons]
    if rec.finetune_preset:
        lines += ["", f"Fine-tune {rec.finetune_preset}: {rec.finetune_reason}"]
    lines += ["", "Settings (autotuned; override any with --override section.key=value)"]
    lines += [f"  {k} = {_toml(v)}" for k, v in rec.settings.items()]
    e = rec.estimate
    label = "measured" if e.calibrated else "estimate"
    fit = {True: "fits", False: "WILL NOT FIT", None: "device memory unknown"}[e.fits]
    memory = ", ".join(f"{k} {_size(v)}" for k, v in e.memory.items())
    lines += ["", f"Estimates for {rec.preset} with these settings (estimates, not measurements)",
              (f"  parameters       {_count(e.n_params)} ({_count(e.n_params_non_embedding)} "
               f"non-embedding; vocabulary {e.vocab_size:,})"),
              f"  FLOPs per token  {_count(e.flops_per_token)} (6N + 12 L T d)",
              (f"  tokens per step  {e.tokens_per_step:,} (micro-batch {e.batch_size} x "
               f"{e.grad_accum_steps} accumulation)"),
              f"  peak memory      {_size(e.memory_total)} of {_size(e.device_memory)} free: {fit}",
              f"                   {memory}"]
    if e.step_seconds is not None:
        total = f", {_seconds(e.total_seconds)} for the run" if e.total_seconds else ""
        lines.append(f"  time             {_seconds(e.step_seconds)} per step ({label}){total}")
    else:
        lines.append("  time             no estimate for this device (try --calibrate)")
    lines += [f"  note: {n}" for n in e.notes]
    if rec.warnings:
        lines += ["", "Warnings"] + [f"  - {w}" for w in rec.warnings]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def calibrate_recommendation(rec: Recommendation, hardware, steps: int = 3) -> Recommendation:
    """rec with its time estimate replaced by a few real steps timed here."""
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.planning.calibrate import calibrate

    cfg = load_config(rec.preset, rec.overrides + [f"{k}={_toml(v)}" for k, v in rec.settings.items()])
    seconds = calibrate(cfg, rec.estimate.vocab_size, steps=steps)
    rec.estimate = estimate(cfg, rec.estimate.vocab_size, hardware, calibrated_step_seconds=seconds)
    return rec
