"""What a start builds before the first step (`TrainingSetup`): the run's config as
resolved for the device, its data and batch samplers, the model (wrapped for torchrun
and torch.compile), optimizer and loss scaler; the device's ways with a batch
(`to_device`, `autocast`); and what can be told about the run once it is built
(a step estimated to be slow, many passes over the data).

The Trainer builds it once per start, at the start's commit point (engine.training.trainer).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch

from llmtui.engine.config.resolved import ResolvedConfig
from llmtui.engine.data.batches import BatchSampler, EpochSampler, epoch_steps, eval_offsets
from llmtui.engine.data.prepare import PreparedData
from llmtui.engine.data.tokenizers import Tokenizer
from llmtui.engine.model.gpt import GPT, NEW_FIELDS, GPTConfig
from llmtui.engine.model.optim import Optimizers
from llmtui.engine.planning import cpu as planning_cpu
from llmtui.engine.planning.device import Placement
from llmtui.engine.planning.sizing import MANY_EPOCHS
from llmtui.engine.training.distributed import DistContext
from llmtui.engine.training.weight_average import WeightAverage

# warn before starting when a step is estimated to take this long (at this share of the
# measured matmul peak, what training steps reach on CPUs here)
SLOW_STEP_SECONDS = 10.0
SLOW_STEP_EFFICIENCY = 0.6


@dataclass
class TrainingSetup:
    """What `Trainer.setup()` builds: the run's config as resolved for the device,
    its data, model and optimizer."""

    config: ResolvedConfig
    placement: Placement
    threads: int | None                 # CPU intra-op threads (None on CUDA)
    data: PreparedData
    sampler: BatchSampler | EpochSampler
    eval_offsets: list[np.ndarray]
    gpt_config: GPTConfig
    raw_model: GPT                      # the module itself, for checkpoints and sampling
    model: torch.nn.Module              # what the loop calls: maybe compiled, maybe DDP
    optimizers: Optimizers
    scaler: torch.amp.GradScaler
    n_params: int
    n_params_non_embedding: int
    flops_per_token: float
    peak_flops: float                   # MFU denominator
    tokens_per_step: int
    eval_every: int
    weight_average: WeightAverage | None = None   # training.ema_decay > 0 (engine.training.weight_average)

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def tokenizer(self) -> Tokenizer:
        return self.data.tokenizer

    def compat_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint of this run records so that a resume can check that it fits:
        the model's shape, the tokenizer, the data."""
        model = asdict(self.gpt_config) | {"dropout": None, "gradient_checkpointing": None}
        for name, default in NEW_FIELDS.items():   # absent at their defaults, as before they existed
            if model[name] == default:
                del model[name]
        return {"model": model, "tokenizer": self.tokenizer.fingerprint(), "data": self.data.fingerprint}


def schedule(config: ResolvedConfig, train_tokens: int, world: int) -> tuple[int | None, int]:
    """(max_steps with training.epochs, None without; steps between evaluations) for a
    training split of `train_tokens` shared by `world` processes."""
    per_epoch = epoch_steps(train_tokens, config, world)
    t = config.training
    max_steps = max(1, math.ceil(t.epochs * per_epoch)) if t.epochs > 0 else None
    eval_every = config.eval.every_n_steps
    if config.eval.every_n_epochs > 0:
        eval_every = max(1, math.ceil(config.eval.every_n_epochs * per_epoch))
    return max_steps, eval_every


def samplers(config: ResolvedConfig, data: PreparedData, rank: int, world: int
             ) -> tuple[BatchSampler | EpochSampler, list[np.ndarray]]:
    """The training batches' sampler of process `rank` and the evaluation windows."""
    t = config.training
    sampler = train_sampler(config, data.train, rank, world, shuffle=t.epochs > 0 or t.sampling == "shuffle")
    return sampler, eval_offsets(len(data.val), config.model.block_size, t.batch_size, config.eval.max_batches)


def train_sampler(config: ResolvedConfig, train: np.ndarray, rank: int, world: int, *, shuffle: bool
                  ) -> BatchSampler | EpochSampler:
    """Process `rank`'s training batches: shuffled passes (every window once per pass, each
    pass shared out by rank) or random windows (each rank its own stream)."""
    block, batch, seed = config.model.block_size, config.training.batch_size, config.run.seed
    if shuffle:
        return EpochSampler(train, block, batch, seed, rank, world)
    return BatchSampler(train, block, batch, seed + rank)


def wrap(raw_model: GPT, config: ResolvedConfig, device: torch.device, dist: DistContext, fsdp: bool
         ) -> torch.nn.Module:
    """What the loop calls: the model sharded (FSDP, in place), or in DDP under torchrun,
    and compiled with training.compile."""
    model: torch.nn.Module = raw_model
    if fsdp:
        from llmtui.engine.training import sharded
        sharded.shard(raw_model)    # the module itself, its parameters now shards
    elif dist.enabled:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.training.compile:
        # an OptimizedModule (typed as a callable): the module, compiled on first call
        model = cast(torch.nn.Module, torch.compile(model))
    return model


def to_device(device: torch.device, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch moved to the device (through pinned memory to a GPU, without waiting)."""
    if device.type == "cuda":
        return (x.pin_memory().to(device, non_blocking=True),
                y.pin_memory().to(device, non_blocking=True))
    if device.type != "cpu":
        return x.to(device), y.to(device)
    return x, y


def autocast(setup: TrainingSetup) -> Any:
    """The mixed-precision context of the run's precision (none in fp32)."""
    dtype = setup.placement.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=setup.device.type, dtype=dtype)


def estimated_step_seconds(setup: TrainingSetup) -> float | None:
    """A step's seconds from its FLOPs at SLOW_STEP_EFFICIENCY of the device's measured
    peak; None without a peak."""
    if not setup.peak_flops:
        return None
    return ((setup.flops_per_token * setup.tokens_per_step + setup.optimizers.extra_flops_per_step)
            / (setup.peak_flops * SLOW_STEP_EFFICIENCY))


def free_machine_step_seconds(setup: TrainingSetup) -> float | None:
    """What a step should take when nothing else runs on the device. On a CPU the
    planner's estimate (engine.planning.estimate: the matmuls plus the elementwise work,
    the figure the wizard and `llmtui detect` show; the FLOPs alone say half of it for the
    cpu preset); elsewhere estimated_step_seconds. Detects the hardware (cached per
    process, a few hundred ms the first time), so it is for rare paths, not the start."""
    if setup.device.type != "cpu":
        return estimated_step_seconds(setup)
    from llmtui.engine.planning.estimate import estimate

    return estimate(setup.config, setup.data.vocab_size).step_seconds


def slow_warning(setup: TrainingSetup, steps_to_go: int) -> str | None:
    """Said before starting when a step is estimated to take long."""
    seconds = estimated_step_seconds(setup)
    if seconds is None or seconds < SLOW_STEP_SECONDS:
        return None
    total = seconds * steps_to_go
    return (f"estimated {seconds:,.0f} s per step, about {total / 3600:,.1f} h for the "
            f"{steps_to_go:,} steps to go (an estimate from "
            "the FLOPs and this device's matmul speed); lower model.block_size, "
            "model.n_layer or model.n_embd, or the batch size, to go faster")


def amx_precision_hint(setup: TrainingSetup) -> str | None:
    """Said before starting an fp32 run on a CPU with AMX bf16 units when the model is wide
    enough for bf16 autocast to be the faster (engine.planning.cpu.AMX_BF16_MIN_WIDTH,
    measured): a preset opened as it is, a fine-tune of a pretrained model, fp32 set by hand."""
    if setup.device.type != "cpu" or setup.placement.precision != "fp32":
        return None
    width = setup.gpt_config.n_embd
    if not planning_cpu.amx_bf16_pays(planning_cpu.cpu_flags(), width):
        return None
    return (f"this CPU has AMX bf16 matrix units: for a model {width} wide, training.precision = "
            "\"bf16\" or \"auto\" (mixed precision) measured 1.2x (192 wide) to 2.2x (512 wide) faster than "
            "the fp32 this run uses")


def many_epochs_warning(setup: TrainingSetup, max_steps: int) -> str | None:
    """Said before starting when the steps make far more passes over the training split
    than a model can take without learning it by heart."""
    t, train = setup.config.training, len(setup.data.train)
    if t.epochs > 0 or not train:
        return None
    epochs = setup.tokens_per_step * max_steps / train
    if epochs <= MANY_EPOCHS:
        return None
    return (f"training.max_steps = {max_steps:,} makes {epochs:,.0f} passes over the "
            f"{train:,} training tokens: the model will learn them by heart (val loss rises "
            "after the first passes); give more text (data.source) or fewer steps "
            f"(training.epochs = {MANY_EPOCHS:g} or less)")
