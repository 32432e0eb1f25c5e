"""Fit a config to a device: micro-batch and accumulation, precision, threads.

The training recipe is the tokens per optimizer step; autotune keeps it and
trades micro-batch size against gradient accumulation until the estimated
peak memory (engine.planning.sizing) fits the device. Every choice is returned as a
`section.key` setting with a reason, so the user sees it and can override it.

`fit_batch(cfg, placement, vocab)` is the run-time half: the trainer calls it once
per start, after device placement and data preparation, to turn
`training.batch_size = "auto"` (and `grad_accum_steps = "auto"`) into numbers for
the device it really got; the `BatchFit` it returns (the resolved config, the
estimated peak memory of that batch, the device's free memory) is what the memory
checks and the run use from then on. `resolve_auto` is its short form.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

from llmtui.engine.config.resolved import ResolvedConfig, is_auto, resolve
from llmtui.engine.planning.cpu import AMX_BF16_MIN_WIDTH
from llmtui.engine.planning.sizing import (
    DEFAULT_AUTO_BATCH,
    Target,
    fastest_precision,
    memory_parts,
    target_for,
    vocab_for,
)

# plan for this share of the free memory: estimates are +-20%, and the desktop,
# the TUI and the OS keep allocating while training runs
HEADROOM = 0.85

GiB = 2**30

# refuse to build a model whose estimated peak memory is over this many times what the
# device has free (estimates are within about 20%, so this is beyond doubt); --force
# goes ahead anyway. Training and inference refuse at the same factor.
REFUSE_MEMORY_FACTOR = 1.5


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


# ---------------------------------------------------------------------------
# micro-batch and accumulation

def target_sequences(cfg) -> int:
    """Sequences per optimizer step that "auto" settings aim for."""
    t = cfg.training
    if t.target_tokens_per_step:
        return max(1, round(t.target_tokens_per_step / cfg.model.block_size))
    batch = DEFAULT_AUTO_BATCH if is_auto(t.batch_size) else t.batch_size
    accum = 1 if is_auto(t.grad_accum_steps) else t.grad_accum_steps
    return batch * accum


def fits(cfg, batch: int, vocab: int, target: Target) -> bool:
    if target.memory is None:
        return True
    return sum(memory_parts(cfg, batch, vocab, target).values()) <= HEADROOM * target.memory


def largest_fitting(cfg, vocab: int, target: Target, limit: int) -> int:
    """The largest micro-batch <= limit that fits (1 when none does); memory
    grows with the batch, so a binary search is exact."""
    low, high = 1, max(1, limit)
    if fits(cfg, high, vocab, target):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        if fits(cfg, mid, vocab, target):
            low = mid
        else:
            high = mid
    return low


def split_batch(cfg, vocab: int, target: Target, sequences: int) -> tuple[int, int]:
    """(micro-batch, accumulation) with micro-batch * accumulation == sequences
    exactly when a divisor fits, the largest such micro-batch."""
    most = largest_fitting(cfg, vocab, target, sequences)
    for batch in range(most, 0, -1):
        if sequences % batch == 0:
            return batch, sequences // batch
    return 1, sequences


def choose_batch(cfg, vocab: int, target: Target) -> tuple[int, int, list[str]]:
    """Concrete (batch_size, grad_accum_steps) for cfg on target: numbers are
    kept, "auto" values chosen. Notes say what was chosen."""
    t = cfg.training
    batch, accum = t.batch_size, t.grad_accum_steps
    if not is_auto(batch) and not is_auto(accum):
        return batch, accum, []
    want = target_sequences(cfg)
    if is_auto(batch) and is_auto(accum):
        batch, accum = split_batch(cfg, vocab, target, want)
    elif is_auto(batch):
        batch = largest_fitting(cfg, vocab, target, math.ceil(want / accum))
    else:
        accum = max(1, round(want / batch))
    tokens = batch * accum * cfg.model.block_size
    note = (f"auto batch: micro-batch {batch} x {accum} accumulation = {tokens:,} tokens per "
            f"step on {target.label}")
    return batch, accum, [note]


# ---------------------------------------------------------------------------
# precision and threads

def best_precision(target_kind: str, hardware, gpu=None, width: int | None = None) -> tuple[str, str]:
    """(precision, reason): the fastest format the device runs natively for a model
    `width` (n_embd) wide (None: a wide one): sizing.fastest_precision's choice, which
    training.precision = "auto" makes at run time, with the reason for it."""
    if target_kind == "cuda":
        cc = gpu.compute_capability
        precision = fastest_precision("cuda", width, gpu_bf16=gpu.bf16, compute_capability=cc)
        if cc is None:
            return precision, (f"{gpu.name}: compute capability unknown, so fp32 (give "
                               "--gpu NAME:VRAM_GB:CC, e.g. \"My GPU:12:8.6\", to plan mixed precision)")
        where = f"{gpu.name} (compute capability {cc[0]}.{cc[1]})"
        if precision == "bf16":
            return precision, f"{where} runs bf16 natively: mixed precision bf16, no loss scaling"
        if precision == "fp16":
            return precision, (f"{where} has no bf16 but fast fp16: mixed precision fp16 with a "
                               "GradScaler (loss scaling keeps small gradients from underflowing)")
        return precision, f"{where} runs fp16 at a fraction of its fp32 speed: fp32"
    flags = frozenset(hardware.cpu.flags)
    precision = fastest_precision("cpu", width, cpu_flags=flags)
    if precision == "bf16":
        return precision, "the CPU has AMX bf16 matrix units: mixed precision bf16"
    if "amx_bf16" in flags:
        return precision, (f"the CPU has AMX bf16 matrix units, but for a model {width} wide bf16 "
                           "autocast measured slower than fp32 (its casts cost more than the faster "
                           f"matmuls save below {AMX_BF16_MIN_WIDTH} wide): fp32")
    if hardware.cpu.bf16_native:
        # measured on a Zen 5 (AVX512_BF16): the recipe ran at 27.1k tokens/s in bf16
        # autocast vs 29.3k in fp32, the casts cost more than the faster matmuls save
        return precision, ("the CPU has AVX512_BF16, but bf16 autocast measured no faster than "
                           "fp32 for small models on it: fp32 (set training.precision = \"bf16\" to try)")
    return precision, ("the CPU has no native bf16/fp16 matrix instructions (AVX512_BF16/AMX): "
                       "fp32 (emulated 16-bit math runs over 100x slower)")


def autotune(cfg, hardware, target: Target, vocab: int | None = None, keep: frozenset[str] = frozenset()
             ) -> tuple[dict[str, object], list[str], list[str]]:
    """Settings ('section.key' -> value) fitting cfg to target, the reasons for
    them, and warnings (a config that will not fit). The keys in `keep` (the user's
    own settings) keep cfg's values: they are planned with, not replaced."""
    vocab = vocab or vocab_for(cfg)
    settings: dict[str, object] = {}
    reasons: list[str] = []
    warnings: list[str] = []

    width = cfg.model.n_embd
    if cfg.training.precision == "auto":
        # the trainer makes best_precision's choice itself: "auto" stays, so the config
        # picks again on another device
        precision = "auto"
        reasons.append(f"training.precision = \"auto\": {best_precision(target.kind, hardware, target.gpu, width)[1]}")
    elif "training.precision" in keep:
        precision = cfg.training.precision
        reasons.append(f"training.precision = \"{precision}\": your setting")
    else:
        precision, why = best_precision(target.kind, hardware, target.gpu, width)
        reasons.append(why)
    settings["training.precision"] = precision
    target = target_for(target.device, precision, hardware, width=width)
    if target.precision != precision and precision != "auto":
        reasons[-1] += f" (this device runs it as {target.precision})"

    if target.kind == "cpu":
        cores = hardware.cpu.physical_cores
        if "run.threads" in keep:
            settings["run.threads"] = cfg.run.threads
        else:
            settings["run.threads"] = cores
            reasons.append(f"{cores} physical CPU cores: run.threads = {cores} (one per core; "
                           "hyperthreads and oversubscription slow small matrix products)")

    t = cfg.training
    tuned = copy.deepcopy(cfg)
    tuned.training.precision = precision
    if is_auto(t.batch_size) or is_auto(t.grad_accum_steps):
        want, source = target_sequences(cfg), "the config's target"
    else:
        want, source = t.batch_size * t.grad_accum_steps, "as the preset intends"
    batch, accum = split_batch(tuned, vocab, target, want)
    if not fits(tuned, batch, vocab, target) and not cfg.model.gradient_checkpointing:
        tuned.model.gradient_checkpointing = True
        batch, accum = split_batch(tuned, vocab, target, want)
        if fits(tuned, batch, vocab, target):
            settings["model.gradient_checkpointing"] = True
            reasons.append("even one sequence per micro-batch does not fit: gradient "
                           "checkpointing recomputes activations in backward (~30% slower)")
        else:
            tuned.model.gradient_checkpointing = False
    settings["training.batch_size"] = batch
    settings["training.grad_accum_steps"] = accum
    tokens = batch * accum * cfg.model.block_size
    need = sum(memory_parts(tuned, batch, vocab, target).values())
    room = f"estimated {gib(need)} of {gib(target.memory)} free" if target.memory else "memory unknown"
    reasons.append(f"micro-batch {batch} x {accum} accumulation = {tokens:,} tokens per optimizer "
                   f"step, {source}; {room} on {target.label}")
    if target.memory is not None and need > target.memory:
        warnings.append(will_not_fit(need, target))
    return settings, reasons, warnings


def will_not_fit(need: int, target: Target) -> str:
    available = gib(target.memory) if target.memory is not None else "an unknown amount"
    return (f"will not fit: estimated {gib(need)} > {available} available on "
            f"{target.label}; lower training.batch_size, model.block_size, model.n_embd or "
            "model.n_layer, or set model.gradient_checkpointing = true")


# ---------------------------------------------------------------------------
# run time: the trainer's device

def placement_target(placement) -> Target:
    """A Target for the device the trainer placed the run on, with the memory
    free on it now."""
    device = placement.device
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        name = torch.cuda.get_device_name(device)
        return Target("cuda", placement.precision, int(free), None,
                      f"cuda:{device.index or 0} ({name})")
    if device.type == "mps":
        import torch

        free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
        return Target("mps", placement.precision, int(free), None, f"mps ({torch.backends.mps.get_name()})")
    import psutil

    return Target("cpu", placement.precision, int(psutil.virtual_memory().available), None, "cpu")


@dataclass(frozen=True)
class BatchFit:
    """A run's batch on the device it was placed on, chosen once (choose_batch) and
    passed down: the config with its batch settings as numbers, what "auto" chose,
    and the estimated peak memory of that batch against the device's free memory."""

    config: ResolvedConfig
    notes: list[str]        # what "auto" chose (none for numbers)
    need: int               # estimated peak bytes of one training step in one of `world` processes
    target: Target          # the placed device, with the memory it had free when the batch was chosen
    vocab: int
    world: int = 1

    @property
    def warning(self) -> str | None:
        """"will not fit: ..." when the estimate exceeds what the device has free."""
        if self.target.memory is not None and self.need > self.target.memory:
            return will_not_fit(self.need, self.target)
        return None

    def with_batch(self, batch: int, accum: int) -> BatchFit:
        """The same fit with other numbers (another process's choice, the global batch
        of a resumed run): the memory of that batch, nothing chosen again."""
        if (batch, accum) == (self.config.training.batch_size, self.config.training.grad_accum_steps):
            return self
        config = resolve(self.config, batch, accum)
        return replace(self, config=config, need=_need(config, batch, self.vocab, self.target, self.world))


def _need(cfg, batch: int, vocab: int, target: Target, world: int) -> int:
    return sum(memory_parts(cfg, batch, vocab, target, world).values())


def fit_batch(cfg, placement, vocab_size: int | None = None, world: int = 1) -> BatchFit:
    """cfg's batch for the placed device, "auto" settings chosen (numbers are kept),
    with the estimated peak memory of one step in one of `world` processes. `vocab_size`
    is the tokenizer's (a guess from the tokenizer kind when None). Call after
    engine.planning.device.place(), before batches are drawn; once per start."""
    target = placement_target(placement)
    vocab = vocab_for(cfg, vocab_size)
    batch, accum, notes = choose_batch(cfg, vocab, target)
    resolved = resolve(cfg, batch, accum)
    return BatchFit(config=resolved, notes=list(notes), need=_need(resolved, batch, vocab, target, world),
                    target=target, vocab=vocab, world=world)


def resolve_auto(cfg, placement, vocab_size: int | None = None) -> tuple[ResolvedConfig, list[str]]:
    """cfg with "auto" batch settings replaced by numbers for the placed device,
    and messages: what was chosen, and a warning when the estimated peak memory
    exceeds what the device has free ("will not fit: estimated X GiB > Y GiB
    available"). fit_batch's short form, for one process."""
    fit = fit_batch(cfg, placement, vocab_size)
    return fit.config, fit.notes + ([fit.warning] if fit.warning else [])


def smallest_peak(cfg, placement, vocab_size: int | None = None, world: int = 1) -> tuple[int, Target]:
    """(estimated peak bytes of one training step in one of `world` processes, the placed
    device with its free memory now) for cfg at the smallest batch it can have: its
    micro-batch, or 1 where that is "auto" (chosen later, by fit_batch, to fit). Before
    the data is prepared, when the vocabulary is still a guess: whether even that much
    is far beyond the device is what can be told then. Chooses nothing."""
    target = placement_target(placement)
    batch = cfg.training.batch_size
    return _need(cfg, 1 if is_auto(batch) else batch, vocab_for(cfg, vocab_size), target, world), target
