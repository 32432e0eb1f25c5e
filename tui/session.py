"""What the screens share: the config being edited and what is known about its data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtui.engine.config.document import ConfigDocument


@dataclass
class Session:
    doc: ConfigDocument | None = None
    vocab_size: int | None = None          # known once the data is prepared
    data_summary: dict[str, Any] = field(default_factory=dict)
    data_key: tuple | None = None          # the data settings the summary belongs to
    prompts: list[str] = field(default_factory=list)   # prompts given this session, oldest first

    def data_settings(self) -> tuple:
        doc = self.doc
        keys = ("data.source", "data.sources", "data.val_source", "data.val_fraction",
                "data.prepared_dir", "data.bin_dtype", "tokenizer.kind", "tokenizer.encoding",
                "tokenizer.vocab_size", "tokenizer.special_tokens", "tokenizer.path")
        return tuple(repr(doc.get(k)) for k in keys) if doc else ()

    def data_is_current(self) -> bool:
        return self.data_key is not None and self.data_key == self.data_settings()
