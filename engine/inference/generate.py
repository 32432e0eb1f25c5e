"""Text from a checkpoint, token by token (the app's generate screen streams it).

Decoding is incremental: the text of all new tokens is decoded again after
each token and only what was added is handed out. A byte-level BPE can end a
token inside a multi-byte character; its text then ends in U+FFFD until the
next token completes the character, so such text is held back until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch

from llmtui.engine.data.tokenizers import REPLACEMENT
from llmtui.engine.training.sampling import LoadedModel, load_checkpoint_model


def stream(loaded: LoadedModel, prompt: str, *, max_tokens: int = 200, temperature: float = 0.8,
           top_k: int | None = 200, seed: int = 1337,
           stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """The continuation of `prompt`, one piece of text per generated token (empty while a
    character is incomplete); `temperature` 0 is greedy; `stop()` is asked after each token
    and ends generation when true."""
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = tokenizer.encode(prompt, strict=False) or [0]   # an empty prompt starts from id 0
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=loaded.device)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    new: list[int] = []
    shown = ""
    for i, token in enumerate(model.generate_tokens(idx, max_tokens, temperature, top_k or None, generator)):
        new.append(int(token))
        text = tokenizer.decode(new)
        last = i == max_tokens - 1 or (stop is not None and stop())
        piece = ""
        if text.startswith(shown) and (last or not text.endswith(REPLACEMENT)):
            piece, shown = text[len(shown):], text
        yield piece
        if last:
            return


def generate(checkpoint: str | Path, prompt: str = "\n", *, max_tokens: int = 200,
             temperature: float = 0.8, top_k: int | None = 200, seed: int = 1337,
             device: str = "auto") -> str:
    """The continuation of `prompt` from `checkpoint` (a checkpoint or run directory)."""
    loaded = load_checkpoint_model(Path(checkpoint).expanduser(), device)
    return "".join(stream(loaded, prompt, max_tokens=max_tokens, temperature=temperature,
                          top_k=top_k, seed=seed))
