"""Generate text from a saved checkpoint (used by `llmtui sample` and the app)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import torch

from llmtui.engine.config.loading import config_from_dict
from llmtui.engine.data.tokenizers import tokenizer_from_json
from llmtui.engine.errors import CheckpointError
from llmtui.engine.model.gpt import GPT, gpt_config
from llmtui.engine.planning.device import resolve_device
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.snapshot import load_model_state


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run directory (its newest intact checkpoint)."""
    if (path / ckpt.MANIFEST).exists():
        return path
    found, notes = ckpt.latest_intact(path)
    if found is None:
        detail = f" ({notes[0]})" if notes else ""
        raise CheckpointError(f"{path}: no intact checkpoint found{detail}")
    return found


def load_for_inference(path: Path, device: str = "auto"):
    """Model (eval mode) and tokenizer from a checkpoint."""

    path = resolve_checkpoint(path)
    loaded = ckpt.load(path)
    try:
        cfg = config_from_dict(tomllib.loads(loaded.config_toml), str(path / "config.toml"))
    except tomllib.TOMLDecodeError as exc:
        raise CheckpointError(f"{path / 'config.toml'}: not valid TOML ({exc})") from None
    tokenizer = tokenizer_from_json(loaded.tokenizer)
    torch_device, _ = resolve_device(device)
    model = GPT(gpt_config(cfg, tokenizer.vocab_size))
    load_model_state(model, loaded.model_state, str(path))
    return model.to(torch_device).eval(), tokenizer


def sample_from_checkpoint(path: Path, prompt: str, max_tokens: int, *, temperature: float = 0.8,
                           top_k: int | None = 200, seed: int = 1337, device: str = "auto") -> str:
    model, tokenizer = load_for_inference(path, device)
    ids = tokenizer.encode(prompt, strict=False) or [0]
    dev = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = model.generate(idx, max_tokens, temperature=temperature, top_k=top_k or None, generator=gen)
    return tokenizer.decode(out[0, idx.size(1):].tolist())
