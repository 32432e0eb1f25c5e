"""The engine as a library: load a config, train it, get the results, use the model.

    from llmtui import load_config, train, generate, evaluate, export
    cfg = load_config("cpu", overrides=["training.max_steps=200"])
    result = train(cfg)
    print(result.final_train_loss, result.best_val_loss, result.last_checkpoint)
    print(generate(result.run_dir, "The ", max_tokens=100, temperature=0))
    print(evaluate(result.run_dir, "held_out.txt").bits_per_byte)
    export(result.run_dir, "my-model", format="hf")     # AutoModelForCausalLM.from_pretrained("my-model")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from llmtui.engine.builder_api import TextDataset, build_model
from llmtui.engine.config.loading import config_replace, load_config
from llmtui.engine.config.schema import Config, TrainingConfig
from llmtui.engine.inference.evaluate import EvalResult, evaluate
from llmtui.engine.inference.export import ExportResult, export
from llmtui.engine.inference.generate import generate
from llmtui.engine.training.events import Listener
from llmtui.engine.training.trainer import Trainer, TrainResult

__all__ = ["load_config", "train", "Trainer", "TrainResult", "export", "ExportResult", "evaluate",
           "EvalResult", "generate", "build_model", "train_model", "TextDataset"]


def train(config: Config | str | Path | None = None, *, overrides: Sequence[str] = (),
          resume_from: str | Path | bool | None = None, overwrite: bool = False,
          listeners: list[Listener] | None = None, **settings: Any) -> TrainResult:
    """Train `config` (a Config, a TOML path or a preset name).

    `overrides` are `section.key=value` strings and `settings` are keyword
    settings written `section__key=value` (e.g. `training__max_steps=100`).
    The overrides apply first and the keyword settings after them, whichever
    form `config` takes: a key given both ways takes the keyword's value.
    `resume_from=True` continues from the newest intact checkpoint of the run;
    a path resumes from that checkpoint. `listeners` receive every event
    (engine.training.events) on the training thread.
    """
    if isinstance(config, Config):
        config = config_replace(config, overrides, **settings)  # a copy: the caller's config is not changed
    else:
        config = load_config(config, overrides, **settings)
    return Trainer(config, resume_from=resume_from, overwrite=overwrite, listeners=listeners).run()


def train_model(model: Any, dataset: TextDataset, config: TrainingConfig | Config | None = None, *,
                val_dataset: TextDataset | None = None, overwrite: bool = False) -> TrainResult:
    """Train `model` (llmtui.build_model) on `dataset` with `config` (config.training), in
    place; returns the TrainResult (final_train_loss, final_val_loss, best_val_loss,
    training_time, run_dir, ...). Without val_dataset the last data.val_fraction of the
    tokens is held out."""
    return Trainer(model=model, train_dataset=dataset, val_dataset=val_dataset, config=config,
                   overwrite=overwrite).train()
