"""Out of memory during a step (001, 003): the micro-batch is halved and the step done
again with twice the accumulation, so the global batch stays; after three halvings the
run stops with one line of advice. The device's refusal is injected where the hardware
raises it, in the model's forward, as a CUDA allocator would."""

from __future__ import annotations

import tomllib

import pytest
import torch

from llmtui import load_config
from llmtui.engine.errors import OutOfMemory
from llmtui.engine.training.events import EvalEvent, StartEvent, TrainEvent, WarningEvent
from llmtui.engine.training.trainer import Trainer


def device_that_fits(trainer: Trainer, sequences: int, seen: list[int]):
    """A listener that makes the model's training forward raise torch.OutOfMemoryError for
    micro-batches of more than `sequences` sequences (evaluation is not limited)."""
    def forward(module, args):
        if module.training:
            seen.append(args[0].shape[0])
            if args[0].shape[0] > sequences:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def install(event):
        if isinstance(event, StartEvent):
            trainer.setup_done.raw_model.register_forward_pre_hook(forward)
    return install


@pytest.mark.train
def test_out_of_memory_halves_the_micro_batch_keeps_the_global_batch_and_goes_on(tiny):
    cfg = load_config("cpu", tiny + ["training.batch_size=8", "training.grad_accum_steps=1"])
    trainer = Trainer(cfg)
    seen: list[int] = []
    warnings: list[str] = []
    trains: list[TrainEvent] = []
    evals: list[EvalEvent] = []
    trainer.subscribe(device_that_fits(trainer, 2, seen))
    trainer.subscribe(lambda e: isinstance(e, WarningEvent) and warnings.append(e.message))
    trainer.subscribe(lambda e: isinstance(e, TrainEvent) and trains.append(e))
    trainer.subscribe(lambda e: isinstance(e, EvalEvent) and evals.append(e))
    result = trainer.run()
    assert result.steps == 30 and result.stop_reason == "max_steps"
    oom = [w for w in warnings if w.startswith("out of memory")]
    assert len(oom) == 2 and "micro-batch 8 -> 4" in oom[0] and "micro-batch 4 -> 2" in oom[1]
    assert "grad_accum_steps 2 -> 4" in oom[1] and "the same global batch" in oom[1]
    assert max(seen[-10:]) == 2                        # it trains on at 2 sequences a micro-batch
    assert trains[-1].tokens_seen == 30 * 8 * cfg.model.block_size   # every step had 8 sequences
    # the train loss is a micro-batch's mean still, not summed over the extra micro-batches
    assert trains[-1].loss < 1.5 * evals[-1].val_loss
    saved = tomllib.loads((result.run_dir / "last" / "config.toml").read_text())["training"]
    assert (saved["batch_size"], saved["grad_accum_steps"]) == (2, 4)


@pytest.mark.train
def test_out_of_memory_after_three_halvings_stops_with_advice(tiny):
    cfg = load_config("cpu", tiny + ["training.batch_size=8"])
    trainer = Trainer(cfg)
    trainer.subscribe(device_that_fits(trainer, 0, []))
    with pytest.raises(OutOfMemory) as caught:
        trainer.run()
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert "micro-batch of 1" in message and "gradient_checkpointing" in message and "block_size" in message
