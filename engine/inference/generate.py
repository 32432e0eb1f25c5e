"""Text from a checkpoint, token by token (the app's generate screen streams it).

Decoding is incremental: only the tokens not yet shown are decoded after each
token (decoding everything generated so far each time made a long generation
quadratic: 3,000 tokens streamed at half the speed of 300). A byte-level BPE
can end a token inside a multi-byte character; its text then ends in U+FFFD
until the next token completes the character, so such text is held back until
then, for at most the 4 bytes a UTF-8 character can have: tokens that never
complete one (a model is free to emit any bytes) show as U+FFFD.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch

from llmtui.engine.data.tokenizers import REPLACEMENT
from llmtui.engine.training.loader import (
    LoadedModel,
    Warn,
    check_temperature,
    encode_prompt,
    load_checkpoint_model,
)

MAX_HELD_TOKENS = 4     # a UTF-8 character has at most 4 bytes, so at most 4 byte tokens


def stream(loaded: LoadedModel, prompt: str, *, max_tokens: int = 200, temperature: float = 0.8,
           top_k: int | None = 200, seed: int = 1337,
           stop: Callable[[], bool] | None = None, warn: Warn | None = None) -> Iterator[str]:
    """The continuation of `prompt`, one piece of text per generated token (empty while a
    character is incomplete); `temperature` 0 is greedy; `stop()` is asked after each token
    and ends generation when true; `warn` is told which prompt characters a char
    vocabulary lacks (they are dropped)."""
    check_temperature(temperature)
    model, tokenizer = loaded.model, loaded.tokenizer
    ids, dropped = encode_prompt(tokenizer, prompt)
    if dropped and warn is not None:
        warn(dropped)
    ids = ids or [0]                       # an empty prompt starts from id 0
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=loaded.device)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    held: list[int] = []        # tokens whose text is not shown yet: they start at a character boundary
    for i, token in enumerate(model.generate_tokens(idx, max_tokens, temperature, top_k or None, generator)):
        held.append(int(token))
        text = tokenizer.decode(held)
        last = i == max_tokens - 1 or (stop is not None and stop())
        piece = ""
        if last or not text.endswith(REPLACEMENT):
            piece, held = text, []
        elif len(held) >= MAX_HELD_TOKENS:
            piece, held = _release(tokenizer, held)
        yield piece
        if last:
            return


def _release(tokenizer, held: list[int]) -> tuple[str, list[int]]:
    """Held tokens that can no longer complete a character: the longest prefix whose text
    is whole, or else the first token (no character needs more than 4 byte tokens, so its
    bytes are not a character's start). Returns its text and the tokens still held."""
    for k in range(len(held) - 1, 0, -1):
        text = tokenizer.decode(held[:k])
        if not text.endswith(REPLACEMENT):
            return text, held[k:]
    return tokenizer.decode(held[:1]), held[1:]


def generate(checkpoint: str | Path, prompt: str = "\n", *, max_tokens: int = 200,
             temperature: float = 0.8, top_k: int | None = 200, seed: int = 1337,
             device: str = "auto", force: bool = False) -> str:
    """The continuation of `prompt` from `checkpoint` (a checkpoint or run directory).
    What loading and the prompt have to say (damaged checkpoints skipped, a device that
    is not available, prompt characters the vocabulary lacks) comes as UserWarnings."""
    check_temperature(temperature)
    loaded = load_checkpoint_model(Path(checkpoint).expanduser(), device, force=force)
    said = list(loaded.warnings)
    text = "".join(stream(loaded, prompt, max_tokens=max_tokens, temperature=temperature,
                          top_k=top_k, seed=seed, warn=said.append))
    for message in said:
        warnings.warn(message, UserWarning, stacklevel=2)
    return text
