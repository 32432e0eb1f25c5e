"""Evaluation and samples during training: the validation loss, perplexity and accuracy
over the run's fixed evaluation windows, and text sampled from the model being trained
with a generator of its own (the training RNG stream does not move).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from llmtui.engine.data.batches import iter_eval_batches
from llmtui.engine.training.build import TrainingSetup, autocast, to_device

# while evaluating, tell front ends how far it got at most this often
EVAL_PROGRESS_SECONDS = 0.5


@torch.no_grad()
def evaluate(setup: TrainingSetup, progress: Callable[[int, int], None]) -> dict[str, float]:
    """val_loss, val_perplexity and val_accuracy over the evaluation windows; `progress`
    (batches done, of total) is called a few times a second at most."""
    model, device = setup.model, setup.device
    model.eval()
    # float64 sums (exact over many batches); Apple GPUs have no float64: float32 there
    wide = torch.float32 if device.type == "mps" else torch.float64
    total_loss = torch.zeros((), device=device, dtype=wide)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count, total, told = 0, len(setup.eval_offsets), time.monotonic()
    batches = iter_eval_batches(setup.data.val, setup.eval_offsets, setup.config.model.block_size)
    for done, (x, y) in enumerate(batches):
        if time.monotonic() - told >= EVAL_PROGRESS_SECONDS:   # a few times a second at most
            told = time.monotonic()
            progress(done, total)
        x, y = to_device(device, x, y)
        with autocast(setup):
            logits, loss = model(x, y)
        total_loss += loss.to(wide) * y.numel()
        correct += (logits.argmax(-1) == y).sum()
        count += y.numel()
    model.train()
    val_loss = (total_loss / count).item()
    return {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 700.0)),
            "val_accuracy": correct.item() / count}


@torch.no_grad()
def sample(setup: TrainingSetup, prompt: str, max_tokens: int, *, seed: int,
           cut_short: Callable[[], bool]) -> str:
    """Up to `max_tokens` of text after `prompt`, with the eval section's temperature and
    top-k, from a generator seeded with `seed`; ends early when `cut_short()` says so."""
    c, model, device = setup.config, setup.raw_model, setup.device
    ids = setup.tokenizer.encode(prompt, strict=False) or [0]
    idx = torch.tensor([ids[-setup.gpt_config.block_size:]], dtype=torch.long, device=device)
    # a private generator: sampling must not shift the training RNG stream
    gen = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    new: list[int] = []
    with autocast(setup):
        for token in model.generate_tokens(idx, max_tokens, temperature=c.eval.temperature,
                                           top_k=c.eval.top_k or None, generator=gen):
            new.append(int(token[0, 0]))
            if cut_short():
                break
    model.train()
    return setup.tokenizer.decode(new)
