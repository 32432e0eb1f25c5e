"""The learning-rate schedule: warmup, then cosine or linear decay, constant, or
warmup-stable-decay (wsd)."""

from __future__ import annotations

import math

from llmtui.engine.config.schema import SchedulerConfig


def lr_at(step: int, scheduler: SchedulerConfig, peak: float, total_steps: int) -> float:
    """Warmup then cosine/linear decay to min_learning_rate (nanoGPT's get_lr), constant,
    or wsd: constant until the last decay_fraction of the decay window, then linear to
    min_learning_rate. `step` counts from 0; the decay ends at scheduler.decay_steps
    (0 = total_steps). With scheduler.min_lr_ratio set, the end is that share of `peak`."""
    s = scheduler
    floor = min_lr(s, peak)
    if step < s.warmup_steps:
        return peak * (step + 1) / (s.warmup_steps + 1)
    if s.kind == "constant":
        return peak
    decay_end = s.decay_steps or total_steps
    if step >= decay_end:
        return floor
    if s.kind == "wsd":
        # the stable phase does not depend on the run's length before the decay starts, so
        # a run resumed with a larger max_steps from its stable phase goes on at the same rate
        start = wsd_decay_start(s, total_steps)
        if step < start:
            return peak
        ratio = (step - start) / max(1, decay_end - start)
        return peak + ratio * (floor - peak)
    ratio = (step - s.warmup_steps) / max(1, decay_end - s.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio)) if s.kind == "cosine" else 1.0 - ratio
    return floor + coeff * (peak - floor)


def min_lr(scheduler: SchedulerConfig, peak: float) -> float:
    """The learning rate at the end of the decay: min_lr_ratio * peak, else min_learning_rate."""
    return scheduler.min_lr_ratio * peak if scheduler.min_lr_ratio else scheduler.min_learning_rate


def wsd_decay_start(scheduler: SchedulerConfig, total_steps: int) -> int:
    """The first step of a wsd schedule's decay."""
    decay_end = scheduler.decay_steps or total_steps
    return max(scheduler.warmup_steps, decay_end - round(scheduler.decay_fraction * decay_end))


def lr_jump(scheduler: SchedulerConfig, peak: float, step: int, old_total: int,
            new_total: int) -> tuple[float, float] | None:
    """The learning rate at `step` in a run of `old_total` steps and in one of `new_total`
    (a resume with another max_steps follows the new length), or None when they are the same."""
    if old_total == new_total or step == 0:
        return None
    before, after = lr_at(step, scheduler, peak, old_total), lr_at(step, scheduler, peak, new_total)
    return None if before == after else (before, after)


def lr_jump_hint(scheduler: SchedulerConfig, step: int, old_total: int) -> str:
    """How to go on without the jump lr_jump found."""
    if scheduler.kind == "wsd":
        start = wsd_decay_start(scheduler, old_total)
        return (f"step {step:,} is inside the decay of the {old_total:,}-step run (from step "
                f"{start:,}); resume from a checkpoint before step {start:,} to extend without a jump")
    return ("scheduler.kind = \"wsd\" extends a run without a jump (or set scheduler.decay_steps "
            "to keep the old schedule)")
