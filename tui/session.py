"""What the screens share: the config being edited, what is known about its data, and
the settings a checkpoint is sampled with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmtui.engine.config.document import ConfigDocument
from llmtui.engine.config.schema import Config

if TYPE_CHECKING:   # numpy: loaded by the worker that prepares the data
    from llmtui.engine.data.prepare import PreparedData


@dataclass(frozen=True)
class SampleSettings:
    """How to sample from a checkpoint: what the summary's sample box and the generate
    screen start with, and what they sample with (`max_tokens`: the tokens to generate;
    `top_k` 0 = all; `device` as run.device takes it)."""

    prompt: str = "\n"
    max_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 200
    seed: int = 1337
    device: str = "auto"

    @classmethod
    def of_run(cls, cfg: Config, trained_on: str | None = None) -> SampleSettings:
        """A run's own sampling settings ([eval], run.seed) at a readable length; on the
        CPU when it trained there (`trained_on`: the device it reported)."""
        device = trained_on or cfg.run.device
        return cls(prompt=cfg.eval.sample_prompt, max_tokens=max(cfg.eval.sample_tokens, 200),
                   temperature=cfg.eval.temperature, top_k=cfg.eval.top_k, seed=cfg.run.seed,
                   device="cpu" if str(device).startswith("cpu") else cfg.run.device)


@dataclass
class Session:
    doc: ConfigDocument | None = None
    data: PreparedData | None = None       # what the data step prepared (memory-mapped token files)
    data_key: tuple | None = None          # the data settings `data` was prepared with
    prompts: list[str] = field(default_factory=list)   # prompts given this session, oldest first

    def data_settings(self) -> tuple:
        doc = self.doc
        keys = ("data.source", "data.sources", "data.val_source", "data.val_fraction",
                "data.prepared_dir", "data.bin_dtype", "tokenizer.kind", "tokenizer.encoding",
                "tokenizer.vocab_size", "tokenizer.special_tokens", "tokenizer.path")
        return tuple(repr(doc.get(k)) for k in keys) if doc else ()

    def data_is_current(self) -> bool:
        return self.data_key is not None and self.data_key == self.data_settings()
