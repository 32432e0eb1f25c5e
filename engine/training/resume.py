"""A resumed run: the checkpoint it continues from, the batch it was trained with, and
its training state restored into a newly built setup (model, optimizer, loss scaler,
sampler, RNGs and the run's state).

A checkpoint that does not fit the config (another tokenizer, data or model shape) is
refused with ResumeMismatch, the config's fault; one whose files verify but hold values
this run cannot take is a CheckpointError, and resuming the newest falls back to the
next intact one.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Callable, NamedTuple

from llmtui.engine.data.batches import BatchSampler, EpochSampler
from llmtui.engine.errors import CheckpointError, ResumeMismatch
from llmtui.engine.planning.autotune import BatchFit
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training import optim_shards, sharded
from llmtui.engine.training.build import TrainingSetup, train_sampler
from llmtui.engine.training.distributed import DistContext
from llmtui.engine.training.schedule import lr_jump, lr_jump_hint
from llmtui.engine.training.snapshot import (
    check_model_state,
    load_model_state,
    optimizers_from_files,
    rng_from_files,
)
from llmtui.engine.training.state import RunState
from llmtui.engine.training.weight_average import restore_train_weights, trained_weights

Warn = Callable[[str], None]

_UNREADABLE = (OSError, KeyError, ValueError, TypeError, RecursionError, tomllib.TOMLDecodeError)


def find_checkpoint(run_dir: Path, resume_from: str | Path, warn: Warn) -> Path:
    """The checkpoint to resume from: with "latest" the run's newest intact one (damaged
    ones skipped with a warning), else the one named, verified first."""
    if resume_from == "latest":
        path, notes = ckpt.latest_intact(run_dir)
        for note in notes:
            warn(f"skipped damaged checkpoint: {note}")
        if path is None:
            raise CheckpointError(f"{run_dir}: no intact checkpoint to resume from")
        return path
    path = Path(resume_from)
    ckpt.verify(path)   # a damaged checkpoint named by the user: say so first
    return path


def trained_batch(path: Path) -> tuple[int, int]:
    """(batch_size, grad_accum_steps) the checkpoint's run trained with."""
    saved = path / "config.toml"
    try:
        before = tomllib.loads(saved.read_text(encoding="utf-8"))["training"]
        return before["batch_size"], before["grad_accum_steps"]
    except _UNREADABLE:
        raise CheckpointError(f"{saved}: cannot read the batch settings the run used") from None


def global_batch_accum(batch: int, accum: int, world: int, new_world: int, source: str) -> int:
    """grad_accum_steps that keeps batch * accum * world sequences per optimizer step on
    `new_world` processes with the same micro-batch; ResumeMismatch when none does."""
    sequences = batch * accum * world
    if sequences % (batch * new_world):
        raise ResumeMismatch(
            f"{source}: trained with a global batch of {sequences} sequences ({batch} x {accum} "
            f"accumulation x {world} processes), which {new_world} processes of {batch} cannot "
            f"make; resume on {world} processes, or set training.batch_size and "
            f"training.grad_accum_steps for {new_world} (the batch then changes)")
    return sequences // (batch * new_world)


def keep_global_batch(fit: BatchFit, path: Path, world_now: int) -> tuple[BatchFit, str | None]:
    """Resumed on another number of processes with the batch settings it was trained
    with: the global batch (sequences per optimizer step over all ranks) is kept by
    changing grad_accum_steps (with a message saying so), or the resume is refused with
    one line when it cannot be. Batch settings the user changed are the user's choice
    and are kept."""
    try:
        world = int(json.loads((path / "state.json").read_text(encoding="utf-8"))["world_size"])
        before = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))["training"]
        batch, accum = int(before["batch_size"]), int(before["grad_accum_steps"])
    except _UNREADABLE:
        return fit, None  # a damaged checkpoint is refused, with its cause, when it is loaded
    t = fit.config.training
    if world == world_now or (t.batch_size, t.grad_accum_steps) != (batch, accum):
        return fit, None
    new_accum = global_batch_accum(batch, accum, world, world_now, str(path))
    return fit.with_batch(batch, new_accum), (
        f"{path} was trained by {world} process(es), this run has {world_now}: "
        f"training.grad_accum_steps {accum} -> {new_accum} keeps the global batch of "
        f"{batch * accum * world} sequences per step")


class Restored(NamedTuple):
    state: RunState              # the run's state, with the config's max_steps
    path: Path                   # the checkpoint it came from
    lr_warning: str | None       # the learning rate jumps at the resume point (lr_jump_warning)


def restore(setup: TrainingSetup, path: Path, *, run_dir: Path, newest: bool, max_steps: int,
            dist: DistContext, fsdp: bool, warn: Warn) -> Restored:
    """Load the checkpoint at `path` into the setup's model, optimizer, scaler, sampler and
    RNGs. Resuming the `newest` checkpoint falls back to the next intact one when a checkpoint's
    contents are damaged (files that verify but hold values this model or optimizer
    cannot take)."""
    tried = {path}
    while True:
        try:
            return restore_from(setup, path, max_steps=max_steps, dist=dist, fsdp=fsdp, warn=warn)
        except ResumeMismatch:
            raise                      # the config's fault, not the checkpoint's
        except CheckpointError as exc:
            if not newest:
                raise
            warn(f"skipped damaged checkpoint: {exc}")
            following = next((p for p, _ in ckpt.intact_newest_first(run_dir)
                              if p is not None and p not in tried), None)
            if following is None:
                raise CheckpointError(f"{run_dir}: no intact checkpoint to resume from "
                                      f"(the last one tried: {exc})") from None
            path = following
            tried.add(path)


def restore_from(setup: TrainingSetup, path: Path, *, max_steps: int, dist: DistContext, fsdp: bool,
                 warn: Warn) -> Restored:
    """One checkpoint loaded into the setup."""
    loaded = ckpt.load(path)
    saved = loaded.state
    source = str(path / "state.json")
    mine = setup.compat_fingerprint()
    for key, label in (("tokenizer", "tokenizer"), ("data", "data"), ("model", "model shape")):
        if saved.compat.get(key) != mine[key]:
            raise ResumeMismatch(f"{path}: {label} of the checkpoint does not match the config; "
                                 f"resume with the config it was trained with "
                                 f"({path / 'config.toml'})")
    if fsdp:   # (no weight average when sharded): the trained weights, when saved apart
        weights = trained_weights(loaded.tensors) or loaded.model_state
        check_model_state(setup.raw_model, weights, str(path))
        sharded.load_model_state(setup.raw_model, weights)
    else:
        load_model_state(setup.raw_model, loaded.model_state, str(path))
        # a run with a weight average saved it as the model and the trained weights apart
        restore_train_weights(setup.raw_model, loaded.tensors, setup.weight_average, str(path / "state.safetensors"))
    load = None
    if fsdp:
        def load(optimizer, state):
            sharded.load_optimizer_state(setup.raw_model, optimizer, state)
    configured = [[dict(group) for group in optimizer.param_groups] for optimizer in setup.optimizers]
    try:
        if loaded.optimizer_shards is None:
            optimizers_from_files(setup.optimizers, loaded.tensors, saved.optimizer, source, load=load)
        else:   # a sharded run's optimizer state: this rank's rows, or all of it when not sharded
            _restore_optimizer_shards(setup, loaded, source, fsdp)
        changed = keep_configured_hyperparameters(setup.optimizers, configured)
        if changed:
            warn(f"optimizer settings changed since the checkpoint ({', '.join(changed)}): "
                 "the run goes on with the config's")
        if saved.scaler and setup.scaler.is_enabled():
            setup.scaler.load_state_dict(saved.scaler)
        continue_sampling(setup, saved.samplers[0], dist, warn)
        if len(saved.samplers) == dist.world_size:
            setup.sampler.load_state_dict(saved.samplers[dist.rank])
        else:
            warn(f"checkpoint was written by {len(saved.samplers)} process(es), this run "
                 f"has {dist.world_size}: batch order restarts from a new seed")
            c = setup.config
            if isinstance(setup.sampler, EpochSampler):   # the epoch it was in starts again
                epoch = int(saved.samplers[0].get("epoch", 0))
                setup.sampler.load_state_dict({**setup.sampler.state_dict(), "epoch": epoch, "index": 0})
            else:
                setup.sampler = BatchSampler(setup.data.train, c.model.block_size, c.training.batch_size,
                                             c.run.seed + 1000 * saved.run.step + dist.rank)
        rng_from_files(loaded.tensors, saved.rng)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{source}: training state is damaged ({exc})") from None
    state, saved_max_steps = saved.run, saved.run.max_steps
    state.max_steps = max_steps  # the config's length wins: a resume may extend the run
    return Restored(state, path, lr_jump_warning(setup, state.step, saved_max_steps, max_steps))


def continue_sampling(setup: TrainingSetup, saved: dict, dist: DistContext, warn: Warn) -> None:
    """A run without training.epochs draws its batches on as its checkpoint did (random
    windows, or shuffled passes), whatever training.sampling says now: the resume stays
    exact, and a run saved before training.sampling existed resumes as it trained."""
    c = setup.config
    if c.training.epochs > 0:     # passes are needed; a random state is refused when loaded
        return
    drew_random = saved.get("kind") != "epochs"
    if drew_random == (not isinstance(setup.sampler, EpochSampler)):
        return
    setup.sampler = train_sampler(c, setup.data.train, dist.rank, dist.world_size, shuffle=not drew_random)
    kind = "random" if drew_random else "shuffle"
    warn(f"the checkpoint drew its batches with training.sampling = \"{kind}\", and the resume "
         f"goes on drawing them that way (\"{c.training.sampling}\" applies to new runs)")


def keep_configured_hyperparameters(optimizers, configured: list[list[dict]]) -> list[str]:
    """After the optimizers' state is loaded, their groups' hyperparameters back to the
    config's (`configured`: each group as built from it), the learning rate aside (the
    schedule sets it every step). Loading restores the checkpoint's, as torch does, so a
    weight decay or momentum changed in the config before a resume was ignored while the
    run's config.toml said otherwise. Unchanged settings resume exactly as before.
    Returns what changed, "weight_decay 0.1 -> 0.05" and so on, once per setting."""
    def same(a, b) -> bool:     # a checkpoint's JSON gives lists where the config gives tuples
        return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)

    changed: dict[str, str] = {}
    for optimizer, groups in zip(optimizers, configured):
        for group, wanted in zip(optimizer.param_groups, groups):
            for key in sorted(set(group) | set(wanted)):
                if key in ("params", "lr") or same(group.get(key), wanted.get(key)):
                    continue
                changed.setdefault(key, f"{key} {group.get(key, 'off')} -> {wanted.get(key, 'off')}")
            lr, params = group["lr"], group["params"]
            group.clear()
            group.update(wanted, lr=lr, params=params)
    return list(changed.values())


def _restore_optimizer_shards(setup: TrainingSetup, loaded: ckpt.LoadedCheckpoint, source: str,
                              fsdp: bool) -> None:
    """The optimizer state of a sharded run's checkpoint (engine.training.optim_shards): a
    sharded run reads its rows from the files that hold them; one process (or DDP) reads
    the whole of it."""
    assert loaded.optimizer_shards is not None
    saved = loaded.state.optimizer
    if "muon" in saved:   # FSDP refuses Muon
        raise CheckpointError(f"{source}: Muon's state beside a sharded optimizer state; llmtui "
                              "writes no such checkpoint (damaged or crafted)")
    if setup.optimizers.muon is not None:   # refused before anything is loaded, naming the optimizer
        optimizers_from_files(setup.optimizers, {}, saved, source)
    with optim_shards.ShardReader(loaded.path, loaded.optimizer_shards) as reader:
        if fsdp:
            sharded.load_optimizer_shards(setup.raw_model, setup.optimizers.adam, reader,
                                          loaded.tensors, saved, source)
        else:
            optimizers_from_files(setup.optimizers, {**loaded.tensors, **reader.whole()}, saved, source)


def lr_jump_warning(setup: TrainingSetup, step: int, saved_max_steps: int, new_max_steps: int) -> str | None:
    """Said when a resume with another max_steps changes the learning rate at the resume
    point (the schedule follows the config's length)."""
    c = setup.config
    jump = lr_jump(c.scheduler, c.optimizer.learning_rate, step, saved_max_steps, new_max_steps)
    if jump is None:
        return None
    before, after = jump
    return (f"max_steps {saved_max_steps:,} -> {new_max_steps:,}: the learning rate at step {step:,} goes "
            f"from {before:.3g} to {after:.3g}; {lr_jump_hint(c.scheduler, step, saved_max_steps)}")
