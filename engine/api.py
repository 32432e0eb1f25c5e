"""The engine as a library: load a config, train it, get the results.

    from llmtui import load_config, train
    cfg = load_config("cpu", overrides=["training.max_steps=200"])
    result = train(cfg)
    print(result.final_train_loss, result.best_val_loss, result.last_checkpoint)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmtui.engine.config.loading import (
    apply_override,
    config_replace,
    load_config,
    validate,
)
from llmtui.engine.config.schema import Config
from llmtui.engine.training.events import Listener
from llmtui.engine.training.trainer import Trainer, TrainResult

__all__ = ["load_config", "train", "Trainer", "TrainResult"]


def train(config: Config | str | Path | None = None, *, overrides: list[str] = (),
          resume_from: str | Path | bool | None = None, overwrite: bool = False,
          listeners: list[Listener] | None = None, **settings: Any) -> TrainResult:
    """Train `config` (a Config, a TOML path or a preset name).

    `overrides` are `section.key=value` strings and `settings` are keyword
    settings written `section__key=value` (e.g. `training__max_steps=100`).
    `resume_from=True` continues from the newest intact checkpoint of the run;
    a path resumes from that checkpoint. `listeners` receive every event
    (engine.training.events) on the training thread.
    """
    if isinstance(config, Config):
        config = config_replace(config, **settings)  # a copy: the caller's config is not changed
        for text in overrides:
            apply_override(config, text)
        validate(config)
    else:
        config = load_config(config, overrides, **settings)
    return Trainer(config, resume_from=resume_from, overwrite=overwrite, listeners=listeners).run()
