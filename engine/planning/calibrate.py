"""Seconds per training step, measured: the real model, optimizer and precision
on the config's device, timed for a few steps of random tokens. The estimate
(engine.planning.estimate) is arithmetic; this is the measurement behind
`llmtui detect --calibrate`."""

from __future__ import annotations

import time

import torch

from llmtui.engine.model.gpt import GPT, gpt_config
from llmtui.engine.model.optim import build_optimizers
from llmtui.engine.planning import host_memory
from llmtui.engine.planning.autotune import resolve_auto
from llmtui.engine.planning.device import configure_threads, place, synchronize
from llmtui.engine.planning.sizing import vocab_for

# the first step allocates and the second still runs on cold caches and allocator
WARMUP_STEPS = 2
# small models are timed for this long (up to MAX_STEPS steps): a few steps of 70 ms are
# noise (the cpu preset: 3 steps read 71-78 ms, 30 and 100 steps 69.5 and 69.6 ms)
MIN_SECONDS = 1.0
MAX_STEPS = 30


def calibrate(cfg, vocab_size: int | None = None, steps: int = 3) -> float:
    """Seconds per optimizer step, measured: the real model, optimizers and
    precision on the config's device, at least `steps` steps of random tokens after
    WARMUP_STEPS warm-up steps, more (up to MAX_STEPS) until MIN_SECONDS have passed.
    Takes as long as a few steps of training, and about a second for small models."""
    placement = place(cfg.run.device, cfg.training.precision, width=cfg.model.n_embd)
    device = placement.device
    if device.type == "cpu":
        configure_threads(cfg.run.threads)
        host_memory.keep_freed_memory()   # as training does: the step measured is the step trained
    vocab = vocab_for(cfg, vocab_size)
    cfg, _ = resolve_auto(cfg, placement, vocab_size=vocab)
    batch, accum = cfg.training.batch_size, cfg.training.grad_accum_steps
    model = GPT(gpt_config(cfg, vocab)).to(device)
    dtype = placement.autocast_dtype
    optimizers = build_optimizers(model, cfg.optimizer, autocast_dtype=dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=placement.uses_grad_scaler)
    x = torch.randint(0, vocab, (batch, cfg.model.block_size), device=device)

    def step():
        for _ in range(accum):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                _, loss = model(x, x)
            scaler.scale(loss / accum).backward()
        for opt in optimizers:
            scaler.step(opt)
        scaler.update()
        optimizers.zero_grad()

    def sync():
        synchronize(device)

    for _ in range(WARMUP_STEPS):
        step()
    sync()
    start = time.perf_counter()
    done = 0
    while done < steps or (time.perf_counter() - start < MIN_SECONDS and done < MAX_STEPS):
        step()
        done += 1
    sync()
    return (time.perf_counter() - start) / done
