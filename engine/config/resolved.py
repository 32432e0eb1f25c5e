"""The config as a run uses it: every choice left to run time ("auto") made.

`training.batch_size` and `training.grad_accum_steps` may say "auto" in a
config; the trainer asks engine.planning.autotune for numbers once, after it
knows the device and the vocabulary (on a resume it takes the numbers the
run was trained with), and trains with a ResolvedConfig from then on.

Code asks whether a setting is "auto" only through `is_auto`, and only before
that point: the loader that accepts it (config.loading), the planning code
that chooses the numbers (planning.autotune, which the estimates call too),
the trainer's one resolution (`Trainer._fit_batch`), and the app's wizard that
shows it (tui.fields, tui.widgets.derived_panel). A ResolvedConfig never
holds it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from llmtui.engine.config.schema import SECTIONS, Config, TrainingConfig

AUTO = "auto"


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


class ResolvedTrainingConfig(TrainingConfig):
    """A [training] section whose batch settings are numbers (the schema allows "auto")."""

    batch_size: int
    grad_accum_steps: int


class ResolvedConfig(Config):
    """A Config whose batch settings are numbers. Made by `resolve` only."""

    training: ResolvedTrainingConfig


def resolve(cfg: Config, batch_size: int, grad_accum_steps: int) -> ResolvedConfig:
    """A copy of cfg with the batch settings the run will use."""
    if is_auto(batch_size) or is_auto(grad_accum_steps) or min(batch_size, grad_accum_steps) < 1:
        raise ValueError(f"resolve: batch settings must be numbers >= 1, not "
                         f"{batch_size!r} x {grad_accum_steps!r}")
    sections = {name: copy.deepcopy(getattr(cfg, name)) for name in SECTIONS}
    training = {f.name: getattr(cfg.training, f.name) for f in dataclasses.fields(TrainingConfig)}
    sections["training"] = ResolvedTrainingConfig(**{**copy.deepcopy(training), "batch_size": int(batch_size),
                                                     "grad_accum_steps": int(grad_accum_steps)})
    return ResolvedConfig(**sections)
