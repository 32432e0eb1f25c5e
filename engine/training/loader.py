"""A saved checkpoint loaded for use outside training: the model (eval mode), tokenizer and
config of a checkpoint directory, or of a run's newest intact one. Evaluation, generation and
export (engine/inference) start here, and so do `llmtui sample` and the app's sample box
(`sample_from_checkpoint`: one generation, for a prompt)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch

from llmtui.engine.config.loading import config_from_dict
from llmtui.engine.config.schema import Config
from llmtui.engine.data.tokenizers import Tokenizer, tokenizer_from_json
from llmtui.engine.errors import CheckpointError
from llmtui.engine.model.gpt import GPT, gpt_config
from llmtui.engine.planning.device import resolve_device
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.snapshot import load_model_state


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run directory (its newest intact checkpoint)."""
    path = Path(path)
    if (path / ckpt.MANIFEST).exists():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run or checkpoint directory")
    found, notes = ckpt.latest_intact(path)
    if found is None:
        detail = f" ({notes[0]})" if notes else ""
        raise CheckpointError(f"{path}: no intact checkpoint found{detail}")
    return found


@dataclass
class LoadedModel:
    """A checkpoint ready for inference: the model in eval mode, its tokenizer and config."""

    model: GPT
    tokenizer: Tokenizer
    config: Config
    path: Path          # the checkpoint directory

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_checkpoint_model(path: Path, device: str = "auto") -> LoadedModel:
    """The model (eval mode), tokenizer and config of a checkpoint or of a run's newest one."""
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
    return LoadedModel(model.to(torch_device).eval(), tokenizer, cfg, path)


def sample_from_checkpoint(path: Path, prompt: str, max_tokens: int, *, temperature: float = 0.8,
                           top_k: int | None = 200, seed: int = 1337, device: str = "auto") -> str:
    loaded = load_checkpoint_model(path, device)
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = tokenizer.encode(prompt, strict=False) or [0]
    dev = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = model.generate(idx, max_tokens, temperature=temperature, top_k=top_k or None, generator=gen)
    return tokenizer.decode(out[0, idx.size(1):].tolist())
