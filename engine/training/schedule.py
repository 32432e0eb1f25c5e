"""The learning-rate schedule: warmup, then cosine or linear decay (or constant)."""

from __future__ import annotations

import math

from llmtui.engine.config.schema import SchedulerConfig


def lr_at(step: int, scheduler: SchedulerConfig, peak: float, total_steps: int) -> float:
    """Warmup then cosine/linear decay to min_learning_rate (nanoGPT's get_lr).
    `step` counts from 0; the decay ends at scheduler.decay_steps (0 = total_steps)."""
    s = scheduler
    if step < s.warmup_steps:
        return peak * (step + 1) / (s.warmup_steps + 1)
    if s.kind == "constant":
        return peak
    decay_end = s.decay_steps or total_steps
    if step >= decay_end:
        return s.min_learning_rate
    ratio = (step - s.warmup_steps) / max(1, decay_end - s.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio)) if s.kind == "cosine" else 1.0 - ratio
    return s.min_learning_rate + coeff * (peak - s.min_learning_rate)
