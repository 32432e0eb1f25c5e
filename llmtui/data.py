"""`from llmtui.data import TextDataset`, as LLMBuilder's API spells it (engine.builder_api)."""

from llmtui.engine.builder_api import TextDataset

__all__ = ["TextDataset"]
