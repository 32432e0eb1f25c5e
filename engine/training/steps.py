"""One optimizer step: the step's learning rate, gradient accumulation over the
micro-batches (gradients averaged across processes on the last one only), loss
scaling, clipping and the optimizers' update; and, when the device runs out of
memory, the micro-batch halved (the accumulation doubled) for the step to be done again.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import torch

from llmtui.engine.config.resolved import resolve
from llmtui.engine.errors import OutOfMemory
from llmtui.engine.training import sharded
from llmtui.engine.training.build import TrainingSetup, autocast, to_device
from llmtui.engine.training.distributed import DistContext
from llmtui.engine.training.schedule import lr_at

# out of memory during a step: halve the micro-batch (doubling accumulation) this many
# times before giving up with advice
OOM_HALVINGS = 3


def optimizer_step(setup: TrainingSetup, step: int, max_steps: int, dist: DistContext, fsdp: bool
                   ) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """One optimizer step at `step` of `max_steps`: (the summed micro-batch loss, on the
    device; the learning rate; the gradient norm before clipping, with training.grad_clip)."""
    c = setup.config
    t, model, optimizers, scaler = c.training, setup.model, setup.optimizers, setup.scaler
    peak = c.optimizer.learning_rate
    lr = lr_at(step, c.scheduler, peak, max_steps)
    optimizers.set_lr(lr, peak)
    loss_sum = torch.zeros((), device=setup.device)
    for micro in range(t.grad_accum_steps):
        x, y = to_device(setup.device, *setup.sampler.next_batch())
        # under DDP, gradients are averaged across ranks only on the last micro-step
        sync = micro == t.grad_accum_steps - 1 or not dist.enabled
        if fsdp:
            getattr(setup.raw_model, "set_requires_gradient_sync")(sync)   # FSDP2's (fully_shard)
        no_sync: Any = getattr(model, "no_sync", None)     # DDP's (a compiled wrapper passes it through)
        with autocast(setup), (contextlib.nullcontext() if sync or fsdp else no_sync()):
            # keep no reference to the logits: backward does not need them, and
            # B*T*vocab floats is the largest tensor of a BPE model
            loss = model(x, y)[1]
            scaler.scale(loss / t.grad_accum_steps).backward()
        loss_sum += loss.detach()
    grad_norm = None
    if t.grad_clip > 0:
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        grad_norm = sharded.full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip))
    for optimizer in optimizers:   # one GradScaler for several optimizers: update once
        scaler.step(optimizer)
    scaler.update()
    optimizers.zero_grad()
    return loss_sum, lr, grad_norm


def halve_micro_batch(setup: TrainingSetup, exc: torch.OutOfMemoryError, *, step: int, halvings: int,
                      world: int) -> str:
    """After the device ran out of memory in a step: the half-accumulated gradients and
    cached memory freed, and the setup's micro-batch halved with twice the accumulation
    (the same global batch, so the run's trajectory keeps its meaning); what changed, to
    be said. OutOfMemory, with advice, after `halvings` = OOM_HALVINGS or at a micro-batch of 1."""
    t = setup.config.training
    setup.optimizers.zero_grad()          # the half-accumulated gradients go
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()
    elif setup.device.type == "mps":
        torch.mps.empty_cache()
    if halvings >= OOM_HALVINGS or t.batch_size == 1:
        raise OutOfMemory(
            f"out of memory at step {step:,} even with a micro-batch of {t.batch_size} "
            f"x {t.grad_accum_steps} accumulation steps ({str(exc).splitlines()[0][:120]}); lower "
            "model.block_size, model.n_embd or model.n_layer, set model.gradient_checkpointing = "
            "true or training.precision = \"bf16\" (\"fp16\" on GPUs without bf16), or close "
            "other programs that use the device") from None
    batch, accum = t.batch_size // 2, t.grad_accum_steps * 2
    setup.config = resolve(setup.config, batch, accum)
    setup.sampler.batch_size = batch
    setup.tokens_per_step = batch * accum * setup.config.model.block_size * world
    same = "the same" if batch * accum == t.batch_size * t.grad_accum_steps else "about the same"
    return (f"out of memory at step {step:,}: micro-batch {t.batch_size} -> {batch}, "
            f"grad_accum_steps {t.grad_accum_steps} -> {accum} ({same} global batch); the step "
            f"is done again ({halvings + 1} of {OOM_HALVINGS} halvings)")
