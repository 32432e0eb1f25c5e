"""The LLMBuilder-style Python API (source document 003), over the same engine.

    import llmtui
    config = llmtui.load_config(preset="cpu")
    model = llmtui.build_model(config.model)
    from llmtui.data import TextDataset
    dataset = TextDataset("training_data.txt", block_size=config.model.block_size)
    results = llmtui.train_model(model, dataset, config.training)
    print(results.final_train_loss, results.final_val_loss, results.best_val_loss,
          results.training_time, results.run_dir)

    trainer = llmtui.Trainer(model=model, train_dataset=train, val_dataset=val,
                             config=config.training)
    results = trainer.train()

The model is trained in place. A section of a loaded config (config.training,
config.model) remembers the config it came from, so the preset's optimizer,
scheduler and run settings apply too; a section made on its own gets the
schema's defaults for the rest. Models are llmtui's GPT (build_model): a
module of the user's own is out of scope, and refused with one line.

Imports the engine's config and model modules; the trainer takes its inputs from
here (config_for), and engine.api holds train_model.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from llmtui.engine.config.loading import parent_of, validate
from llmtui.engine.config.schema import Config, ModelConfig, TrainingConfig
from llmtui.engine.errors import UserError

# the vocabulary a model gets when neither config.model.vocab_size nor vocab_size says:
# provisional, replaced by the dataset's tokenizer's when training starts
PROVISIONAL_VOCAB = 256


@dataclasses.dataclass
class TextDataset:
    """A text corpus for training or validation: a file, a folder of .txt files, a
    .bin/.npy token file (as data.source takes it). It names the data; llmtui
    tokenizes it once when training starts (and reuses the prepared tokens after)."""

    path: str | Path
    block_size: int | None = None
    tokenizer: str | None = None          # char | bpe | trained (default: the config's)

    def __post_init__(self):
        if not Path(self.path).expanduser().exists():
            raise UserError(f"TextDataset: {self.path}: no such file or folder")
        if self.block_size is not None and (not isinstance(self.block_size, int) or self.block_size < 2):
            raise UserError(f"TextDataset: block_size = {self.block_size!r} is not allowed; expected an "
                            "integer >= 2")


def build_model(model: ModelConfig | Config | None = None, *, vocab_size: int | None = None):
    """The torch module (llmtui's GPT) that `model` (config.model) describes. Its
    vocabulary is `vocab_size`, else model.vocab_size, else provisional: the dataset's
    tokenizer sets it when training starts (the module is rebuilt in place then)."""
    from llmtui.engine.model.gpt import GPT, gpt_config

    if isinstance(model, Config):
        model = model.model
    model = model if model is not None else ModelConfig()
    if not isinstance(model, ModelConfig):
        raise UserError(f"build_model takes config.model (a ModelConfig), not {type(model).__name__}")
    parent = parent_of(model)
    cfg = copy.deepcopy(parent) if parent is not None else Config()
    cfg.model = copy.deepcopy(model)
    vocab = vocab_size or model.vocab_size or PROVISIONAL_VOCAB
    module = GPT(gpt_config(cfg, vocab))
    module.llmtui_model_config = cfg.model
    module.llmtui_vocab_provisional = not (vocab_size or model.vocab_size)
    return module


def config_for(model, train_dataset: TextDataset, val_dataset: TextDataset | None,
               training: TrainingConfig | Config | None) -> Config:
    """The whole config a model, datasets and training section stand for."""
    if not hasattr(model, "llmtui_model_config"):
        raise UserError(f"Trainer(model=...) takes a model made by llmtui.build_model(config.model); "
                        f"a module of your own ({type(model).__name__}) is out of scope: describe it "
                        "in config.model instead")
    if not isinstance(train_dataset, TextDataset):
        raise UserError("Trainer(train_dataset=...) takes an llmtui.data.TextDataset, not "
                        f"{type(train_dataset).__name__}")
    if isinstance(training, Config):
        base = copy.deepcopy(training)
    elif isinstance(training, TrainingConfig):
        parent = parent_of(training)
        base = copy.deepcopy(parent) if parent is not None else Config()
        base.training = copy.deepcopy(training)
    elif training is None:
        base = Config()
    else:
        raise UserError(f"Trainer(config=...) takes config.training (a TrainingConfig), not "
                        f"{type(training).__name__}")
    base.model = copy.deepcopy(model.llmtui_model_config)
    if not getattr(model, "llmtui_vocab_provisional", True):
        base.model.vocab_size = model.config.vocab_size      # the model's own, padded or not
    if train_dataset.block_size is not None:
        base.model.block_size = train_dataset.block_size
    base.data.source = str(Path(train_dataset.path).expanduser())
    base.data.sources = []
    base.data.val_source = str(Path(val_dataset.path).expanduser()) if val_dataset is not None else ""
    if train_dataset.tokenizer is not None:
        base.tokenizer.kind = train_dataset.tokenizer
    validate(base, "Trainer arguments", {})
    return base

