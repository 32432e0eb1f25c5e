"""The training loop, as a plain class with an event stream and commands.

Front ends (the app, the headless CLI, Python callers) construct a Trainer,
subscribe to its events (engine.training.events) and call `run()` (the app
from a worker thread). Commands (engine.training.commands: Pause, Unpause,
Stop, SaveNow, SetEarlyStopping, SampleNow) are sent from any thread and take
effect at the next step boundary.

Words: to *pause* and *unpause* is to wait between steps within one run; to
*resume from* a checkpoint is to restore a saved run and continue it.

The story of a run: a start is planned (`plan`: every check that can refuse,
nothing written), committed (the run directory locked and marked:
engine.training.start) and set up once, at that commit point (`setup`:
engine.training.build; the batch chosen once, planning.autotune.fit_batch; a
resume restored, engine.training.resume). Then the loop (`_loop`: optimizer
steps, engine.training.steps; the figures of each log line,
engine.training.meter; evaluations and samples, engine.training.evaluation),
and the finish (`_finish`: the last checkpoint, TrainResult, train_log.json,
the done event).

The loop reads values back from the device only at log, eval and checkpoint
steps, never every micro-step, so a GPU is never stalled by the host.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_tensors

from llmtui.engine.config.loading import config_to_toml
from llmtui.engine.config.resolved import is_auto, resolve
from llmtui.engine.config.schema import Config
from llmtui.engine.data.batches import EpochSampler
from llmtui.engine.data.prepare import (
    PreparedData,
    check_sources,
    check_tokenizer,
    prepare_data,
    reuse_prepared,
)
from llmtui.engine.errors import (
    CheckpointError,
    Interrupted,
    RecordError,
    RunFinished,
    UserError,
)
from llmtui.engine.model.gpt import GPT, GPTConfig, gpt_config
from llmtui.engine.model.optim import build_optimizers
from llmtui.engine.planning import host_memory
from llmtui.engine.planning.autotune import (
    REFUSE_MEMORY_FACTOR,
    BatchFit,
    fit_batch,
    smallest_peak,
    will_not_fit,
)
from llmtui.engine.planning.device import Placement, configure_threads, place, remembered_peak
from llmtui.engine.planning.sizing import Target
from llmtui.engine.training import (
    build,
    distributed,
    evaluation,
    init_from,
    optim_shards,
    resume,
    rundir,
    sharded,
    start,
    steps,
)
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.build import TrainingSetup
from llmtui.engine.training.commands import (
    Command,
    Pause,
    SampleNow,
    SaveNow,
    SetEarlyStopping,
    Stop,
    StopReason,
    Unpause,
)
from llmtui.engine.training.cpushare import CpuShare
from llmtui.engine.training.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    ErrorEvent,
    EvalEvent,
    EvalProgressEvent,
    Event,
    EventBuffer,
    JsonlWriter,
    Listener,
    PausedEvent,
    PrepareEvent,
    SampleEvent,
    SaveReason,
    StartEvent,
    TrainEvent,
    UnpausedEvent,
    WarningEvent,
)
from llmtui.engine.training.meter import IntervalMeter, LossSum, load_meter, memory_figures, mfu
from llmtui.engine.training.rundir import RunLock
from llmtui.engine.training.runs import run_dir_of
from llmtui.engine.training.snapshot import checkpoint_files
from llmtui.engine.training.start import StartTransaction
from llmtui.engine.training.state import RunState
from llmtui.engine.training.trackers import check_trackers, trackers
from llmtui.engine.training.weight_average import WeightAverage


@dataclass
class TrainResult:
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    training_time: float          # seconds spent training (evals included, pauses excluded)
    steps: int
    tokens_seen: int
    stop_reason: StopReason
    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics_path: Path
    total_training_time: float | None = None   # over all segments, when this one resumed a run
    epoch: float | None = None                 # epochs done, with training.epochs

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}




class StopTraining(Exception):
    """Raised inside the loop when a command or a check ends training."""


class Trainer:
    def __init__(self, cfg: Config | None = None, *, resume_from: str | Path | bool | None = None,
                 overwrite: bool = False, force: bool = False,
                 listeners: list[Listener] | None = None, model: Any = None,
                 train_dataset: Any = None, val_dataset: Any = None, config: Any = None,
                 prepared: PreparedData | None = None):
        """`resume_from`: True (or "latest") continues from the run's newest intact
        checkpoint, a path from that checkpoint; `overwrite` deletes the run's
        checkpoints and starts over; `force` trains a config whose estimated memory
        is far beyond what the device has (refused otherwise); `prepared`: this
        config's data as prepare_data gave it earlier (the app's data step), used
        without preparing and hashing it again while nothing it was made from
        changed (engine.data.prepare.reuse_prepared), else prepared again.

        LLMBuilder's form (source document 003) is taken too: `Trainer(model=...,
        train_dataset=..., val_dataset=..., config=config.training).train()`, with a
        model from llmtui.build_model, which is trained in place (engine.builder_api)."""
        self._initial_model = None
        if model is not None or train_dataset is not None or config is not None:
            from llmtui.engine.builder_api import config_for
            if cfg is not None:
                raise UserError("Trainer takes a Config, or model=, train_dataset= and config=; not both")
            if model is None or train_dataset is None:
                raise UserError("Trainer(model=..., train_dataset=..., config=config.training) needs both "
                                "a model (llmtui.build_model) and a train_dataset (llmtui.data.TextDataset)")
            cfg = config_for(model, train_dataset, val_dataset, config)
            self._initial_model = model
        elif cfg is None:
            raise UserError("Trainer needs a config (llmtui.load_config(...)), or model=, "
                            "train_dataset= and config=")
        self.cfg = cfg                                   # as given: may hold "auto"
        self.resume_from: str | Path | None = "latest" if resume_from is True else (resume_from or None)
        self.overwrite = overwrite
        self.force = force
        self._prepared = prepared
        self.run_dir = run_dir_of(cfg)
        self.dist = distributed.from_env()
        self.elastic = distributed.elastic_from_env()    # torchrun --max-restarts
        self.events = EventBuffer()
        # events before the metrics file may be opened (nothing is written to the run
        # directory until every check that can refuse has passed) wait here
        self._pending: list[Event] = []
        self._listeners: list[Listener] = [self.events, self._pending.append, *(listeners or [])]
        self._writer: JsonlWriter | None = None
        self._lock_file = RunLock(self.run_dir)
        self._start: StartTransaction | None = None
        # commands, set from any thread
        self._lock = threading.Lock()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._stop_reason: StopReason | None = None
        self._save_requested = False
        self._sample_prompt: str | None = None
        self.early_stopping = cfg.training.early_stopping
        # the run
        self.setup_done: TrainingSetup | None = None
        self.state = RunState(max_steps=cfg.training.max_steps)
        self.restored_from: Path | None = None           # the checkpoint this run resumed from
        self.result: TrainResult | None = None
        # loop bookkeeping
        self._checkpoint_to_resume: Path | None = None
        self._start_step = 0
        self._pause_time = 0.0
        self._lr = 0.0
        self._grad_norm: torch.Tensor | None = None
        self._first_bad_step: torch.Tensor | None = None
        self._diverged_at: int | None = None         # the first step whose loss was not finite
        self._segment_clock: tuple[float, float] | None = None   # (start, training time before)
        self._sampler_states: list[dict] = []
        self._oom_halvings = 0
        self._init_source: init_from.InitSource | None = None   # model.init_from's, once applied
        self._restart_note: str | None = None        # said once the restarted run is restored

    # -- commands (any thread) ---------------------------------------------

    def send(self, command: Command) -> None:
        """Take a command from a front end; it acts at the next step boundary."""
        match command:
            case Pause():
                self._unpaused.clear()
            case Unpause():
                self._unpaused.set()
            case Stop(reason=reason):
                with self._lock:
                    self._stop_reason = StopReason(reason)
                self._unpaused.set()
            case SaveNow():
                with self._lock:
                    self._save_requested = True
            case SetEarlyStopping(enabled=enabled):
                with self._lock:
                    self.early_stopping = enabled
            case SampleNow(prompt=prompt):
                with self._lock:
                    self._sample_prompt = prompt if prompt is not None else self.cfg.eval.sample_prompt
            case _:
                raise TypeError(f"not a trainer command: {command!r}")

    def pause(self) -> None:
        self.send(Pause())

    def unpause(self) -> None:
        self.send(Unpause())

    def stop(self, reason: StopReason | str = StopReason.STOPPED) -> None:
        """Finish the current step, save `last`, and end the run."""
        self.send(Stop(StopReason(reason)))

    def save_now(self) -> None:
        self.send(SaveNow())

    def set_early_stopping(self, enabled: bool) -> None:
        self.send(SetEarlyStopping(enabled))

    def sample_now(self, prompt: str | None = None) -> None:
        self.send(SampleNow(prompt))

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    @property
    def step(self) -> int:
        return self.state.step

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- events ------------------------------------------------------------

    def emit(self, event_type: type[Event], **fields: Any) -> Event:
        event = event_type(step=self.state.step, **fields)
        if self.dist.is_main:  # under torchrun, rank 0 alone reports and logs
            for listener in self._listeners:
                listener(event)
        return event

    def warn(self, message: str) -> None:
        self.emit(WarningEvent, message=message)

    # -- the start: plan, commit, setup -------------------------------------

    def plan(self) -> None:
        """Every check that can refuse the start and needs only to read: the run
        directory (not llmtui's, a run without --resume/--overwrite, a folder of the
        user's with a checkpoint's name, a live writer), the sources, the checkpoint
        to resume from, a finished run, the trackers' packages, the tokenizer and the
        memory estimate. Writes nothing. What can only be known by reading all the
        data is checked during the commit, which a refusal undoes (engine.training.start)."""
        self._apply_init_from()
        if self.resume_from and self.overwrite:
            raise UserError("--resume and --overwrite cannot be used together: --resume continues "
                            "the run, --overwrite starts it over; pass one")
        state = rundir.check_writable(self.run_dir)
        if not self._lock_file.held:
            rundir.refuse_if_held(self.run_dir)   # first: whatever else, the run is someone's now
        # an --overwrite killed midway: its old run comes back under the lock (the commit),
        # and the checks that depend on the run's checkpoints are made then
        recovering = (self.run_dir / rundir.OVERWRITTEN).is_dir()
        exists = state in ("ours", "legacy") and ckpt.has_checkpoints(self.run_dir)
        if exists and not self.resume_from and not self.overwrite and not recovering:
            raise UserError(f"{self.run_dir}: already holds a run with checkpoints; pass --resume "
                            "to continue it, --overwrite to start over, or choose another run.name")
        if state in ("ours", "legacy"):
            foreign = rundir.unrecorded_checkpoint_names(self.run_dir)
            if foreign:
                raise rundir.RunDirError(
                    f"{self.run_dir / foreign[0]}: a folder llmtui did not write has the name of one "
                    "of its checkpoints; llmtui will neither replace nor delete it: move or rename it")
        check_sources(self.cfg)
        check_trackers(self.cfg)
        check_tokenizer(self.cfg)
        if self.resume_from and not recovering:
            path = self._resume_checkpoint()
            step = ckpt.checkpoint_step(path)
            if self.cfg.training.epochs == 0 and step >= self.cfg.training.max_steps:
                raise RunFinished(f"{self.run_dir}: finished at step {step:,} of "
                                  f"{self.cfg.training.max_steps:,}; nothing to resume (raise "
                                  "training.max_steps, e.g. --max-iters N, to train it further)")

    def _continue_after_restart(self) -> None:
        """`torchrun --max-restarts N`: a restarted group continues from the newest intact
        checkpoint its torchrun job wrote, whatever --resume or --overwrite said
        (engine.training.start.restart_checkpoint)."""
        found = start.restart_checkpoint(self.elastic, self.cfg, self.run_dir, self.warn,
                                         job_started=distributed.agent_started)
        if found is not None:
            path, self._restart_note = found
            self.resume_from, self.overwrite, self._checkpoint_to_resume = "latest", False, path

    def _commit_start(self) -> None:
        """Lock the run directory for this process (refusing a second writer), mark it
        as llmtui's, and move an overwritten run aside; every change is undone by
        `self._start.finish()` when the start is refused before the run exists."""
        transaction = self._start = StartTransaction(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise rundir.RunDirError(f"{self.run_dir}: cannot create the run directory "
                                     f"({exc.strerror or exc}); check run.out_dir") from None
        taken_over = self._lock_file.acquire()
        self.plan()  # again, under the lock: another process may have changed the run
        had_marker = rundir.state_of(self.run_dir) == "ours"
        rundir.claim(self.run_dir)
        transaction.marked(had_marker)
        if taken_over:
            self.warn(taken_over)
        note = transaction.recover()
        if note:
            self.warn(note)
            self.plan()   # the old run is back: it may need --resume/--overwrite now
        if self.overwrite:
            try:
                transaction.move_aside()
            except OSError as exc:
                raise rundir.RunDirError(f"{self.run_dir}: cannot move the old run aside to start "
                                         f"over ({exc.strerror or exc}); nothing was deleted") from None

    def setup(self) -> TrainingSetup:
        """Place the run, prepare the data, build model and optimizer, restore a
        checkpoint when resuming; held as `setup_done`. run() calls it once, at the
        start's commit point; called before run() it sets the run up to be looked at
        (benchmarks, tests) and run() trains that setup. Once per Trainer."""
        if self.setup_done is not None:
            raise RuntimeError("Trainer.setup(): this trainer is set up already (setup_done)")
        self._apply_init_from()     # here too: under torchrun only rank 0 plans
        cfg = self.cfg
        placement = place(cfg.run.device, cfg.training.precision,
                          local_rank=self.dist.local_rank if self.dist.enabled else None,
                          width=cfg.model.n_embd, fsdp=self.fsdp)
        device = placement.device
        distributed.init(self.dist, device)
        if self.elastic.enabled:   # rank 0 decided whether (and from where) the group continues
            self.resume_from, chosen = distributed.from_main(self.dist, (
                self.resume_from, None if self._checkpoint_to_resume is None else str(self._checkpoint_to_resume)))
            if chosen is not None:
                self._checkpoint_to_resume = Path(chosen)
        threads = None
        if device.type == "cpu":  # processes on one machine share its cores
            threads = configure_threads(cfg.run.threads, share=self.dist.local_world_size)
            host_memory.keep_freed_memory()
        # rank 0 prepares the data; then the first process of every other machine, which
        # finds it ready when the machines share a filesystem (else prepares its own copy);
        # then the rest, which find it ready and reuse it
        turn = 0 if self.dist.is_main else 1 if self.dist.local_rank == 0 else 2
        for now in range(3):
            if now == turn:
                self._refuse_if_far_beyond(*smallest_peak(   # before minutes of data preparation
                    cfg, placement, None, self.dist.world_size))
                reused = reuse_prepared(self._prepared, cfg) if self._prepared is not None else None
                data = reused or prepare_data(cfg, progress=self._preparing)
            if now < 2:
                distributed.barrier(self.dist)
        for note in data.notes:
            self.warn(note)
        fit = self._fit_batch(placement, data.vocab_size)    # the batch, chosen once per start
        if self.resume_from:
            fit, kept = resume.keep_global_batch(fit, self._resume_checkpoint(), self.dist.world_size)
            if kept:
                self.warn(kept)
        self._refuse_if_far_beyond(fit.need, fit.target)
        config = fit.config

        t = config.training
        world = self.dist.world_size
        max_steps, eval_every = build.schedule(config, len(data.train), world)
        if max_steps is not None:     # training.epochs: the steps they take
            self.state.max_steps = max_steps
        sampler, offsets = build.samplers(config, data, self.dist.rank, world)
        torch.manual_seed(config.run.seed)
        shape = gpt_config(config, data.vocab_size)
        if self._init_source is not None:
            self._init_source.check_tokenizer(data.tokenizer)
        raw_model = self._model_of_shape(shape).to(device)
        if self._init_source is not None and not self.resume_from:   # resumed: from its checkpoint
            self._init_source.load_into(raw_model)
        model = build.wrap(raw_model, config, device, self.dist, self.fsdp)
        optimizers = build_optimizers(raw_model, config.optimizer, autocast_dtype=placement.autocast_dtype)
        scaler = torch.amp.GradScaler(device.type, enabled=placement.uses_grad_scaler)
        self.setup_done = setup = TrainingSetup(
            config=config, placement=placement, threads=threads, data=data, sampler=sampler,
            eval_offsets=offsets, gpt_config=shape, raw_model=raw_model, model=model,
            optimizers=optimizers, scaler=scaler,
            n_params=raw_model.num_params(non_embedding=False),
            n_params_non_embedding=raw_model.num_params(non_embedding=True),
            flops_per_token=raw_model.flops_per_token(), peak_flops=0.0,
            tokens_per_step=t.batch_size * t.grad_accum_steps * config.model.block_size * world,
            eval_every=eval_every,
            weight_average=WeightAverage(raw_model, t.ema_decay) if t.ema_decay else None)
        if self.resume_from:
            self._restore(setup)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        setup.peak_flops = remembered_peak(device.type, placement.precision, device.index or 0)
        for warning in (build.slow_warning(setup, self.state.max_steps - self.state.step),
                        build.many_epochs_warning(setup, self.state.max_steps),
                        build.amx_precision_hint(setup)):
            if warning:
                self.warn(warning)
        return setup

    @property
    def fsdp(self) -> bool:
        """Sharded training (training.parallel = "fsdp" under torchrun)."""
        return self.dist.enabled and self.cfg.training.parallel == "fsdp"

    def _model_of_shape(self, shape: GPTConfig) -> GPT:
        """A new model, or the one given as Trainer(model=...), trained in place. Its
        vocabulary may still be provisional (build_model before the tokenizer was known):
        then it is built again, in place, in this shape."""
        given = self._initial_model
        if given is None:
            return GPT(shape)
        if given.config != shape:
            if not getattr(given, "llmtui_vocab_provisional", False):
                raise UserError(f"Trainer(model=...): the model was built as {given.config} but the "
                                f"config and data make {shape}; build it again with "
                                "llmtui.build_model(config.model)")
            GPT.__init__(given, shape)
            given.llmtui_vocab_provisional = False
        return given

    def train(self) -> TrainResult:
        """The same as run() (LLMBuilder's name)."""
        return self.run()

    def _apply_init_from(self) -> None:
        """Make the config describe model.init_from's model (engine.training.init_from)."""
        if self._init_source is None:
            self.cfg, self._init_source = init_from.apply(self.cfg, force=self.force)

    def _preparing(self, stage: str, done: int, total: int) -> None:
        """Data preparation's progress (a few times a second): tell the front ends, and
        end preparation at once when a Stop came (Ctrl-C must not wait for a large corpus)."""
        self.emit(PrepareEvent, stage=stage, done=done, total=total)
        with self._lock:
            reason = self._stop_reason
        if reason is not None:
            raise Interrupted(f"{'interrupted' if reason == 'interrupted' else 'stopped'} during data "
                              f"preparation ({stage}); nothing was trained or saved, and the "
                              "half-prepared files were removed")

    def _refuse_if_far_beyond(self, need: int, target: Target) -> None:
        """Refuse before allocating when the estimated peak memory is far beyond what the
        device has (`force` trains anyway): before the data is prepared at the smallest
        batch the config allows (the vocabulary is a guess then), after it at the batch
        the run trains with."""
        if target.memory is None or need <= REFUSE_MEMORY_FACTOR * target.memory or self.force:
            return
        raise UserError(f"{will_not_fit(need, target)} (estimated {need / 2**30:,.1f} GiB is over "
                        f"{REFUSE_MEMORY_FACTOR:g}x what is free; pass --force to try anyway)")

    def _fit_batch(self, placement: Placement, vocab_size: int) -> BatchFit:
        """The run's batch: "auto" settings made numbers for this device, with the
        estimated peak memory of that batch (and a warning when it will not fit). A resumed
        run keeps the numbers it was trained with; under torchrun every rank takes rank 0's
        choice."""
        cfg, t = self.cfg, self.cfg.training
        if self.resume_from and (is_auto(t.batch_size) or is_auto(t.grad_accum_steps)):
            cfg = resolve(cfg, *resume.trained_batch(self._resume_checkpoint()))
        fit = fit_batch(cfg, placement, vocab_size, self.dist.world_size)
        batch, accum = distributed.gather(self.dist, [fit.config.training.batch_size,
                                                      fit.config.training.grad_accum_steps])[0]
        fit = fit.with_batch(batch, accum)
        for note in fit.notes + ([fit.warning] if fit.warning else []):
            self.warn(note)
        return fit

    def _resume_checkpoint(self) -> Path:
        """The checkpoint to resume from (found once, damaged ones skipped with a warning)."""
        if self._checkpoint_to_resume is None:
            assert self.resume_from is not None, "only a resumed run has a checkpoint to resume from"
            self._checkpoint_to_resume = resume.find_checkpoint(self.run_dir, self.resume_from, self.warn)
        return self._checkpoint_to_resume

    def _restore(self, setup: TrainingSetup) -> None:
        """The checkpoint to resume from loaded into the setup (engine.training.resume),
        and the run's state taken from it."""
        restored = resume.restore(setup, self._resume_checkpoint(), run_dir=self.run_dir,
                                  newest=self.resume_from == "latest", max_steps=self.state.max_steps,
                                  dist=self.dist, fsdp=self.fsdp, warn=self.warn)
        self.state, self.restored_from = restored.state, restored.path
        if restored.lr_warning:     # at the step the run continues from
            self.warn(restored.lr_warning)

    # -- checkpoints -------------------------------------------------------

    def _files(self, setup: TrainingSetup, model_state: dict | None = None,
               optimizer_files: tuple | None = None, extra_files: dict | None = None) -> dict[str, Any]:
        average, state_tensors = setup.weight_average, None
        if average is not None:     # the average is the checkpoint's model; the trained weights resume
            model_state, state_tensors = average.model_state(), average.train_weights()
        return checkpoint_files(model=setup.raw_model, optimizers=setup.optimizers, scaler=setup.scaler,
                                model_state=model_state, optimizer_files=optimizer_files,
                                extra_files=extra_files, state_tensors=state_tensors,
                                run=self.state, samplers=self._sampler_states,
                                world_size=self.dist.world_size,
                                compat=setup.compat_fingerprint(), time=time.time(),
                                config_toml=config_to_toml(setup.config),
                                tokenizer_json=setup.tokenizer.to_json())

    def _count_training_time(self) -> None:
        """Bring the run's total training time (all segments, pauses excluded) up to now."""
        if self._segment_clock is not None:
            started, before = self._segment_clock
            self.state.training_time = before + time.perf_counter() - started - self._pause_time

    def save(self, reason: SaveReason, epoch: int | None = None) -> Path | None:
        """Write `last` (and `step_N` / `best` as the reason asks). Every rank
        calls this at the same step; rank 0 alone writes."""
        setup = self._built()
        self._count_training_time()
        self._sampler_states = distributed.gather(self.dist, setup.sampler.state_dict())
        if not self.fsdp:
            if not self.dist.is_main or not self._may_write(setup.raw_model.parameters()):
                return None
            return self._write(setup, reason, epoch, self._files(setup))
        # sharded: every rank gives its weights to rank 0, which writes them consolidated, and
        # sends rank 0 its optimizer rows once rank 0 has decided to write (one file per rank)
        model_state = sharded.gather_model_state(setup.raw_model)
        shard = sharded.optimizer_shard(setup.optimizers.adam, self.dist.rank, self.dist.world_size)
        channel = distributed.byte_channel(self.dist)
        refused: UserError | None = None
        write = False
        if self.dist.is_main:
            try:
                write = self._may_write(model_state.values())
            except UserError as exc:     # the lock is lost: said after the others know
                refused = exc
        if not distributed.from_main(self.dist, write):
            if refused is not None:
                raise refused
            return None
        own = save_tensors(shard.rows)
        if not self.dist.is_main:
            distributed.send_to_main(own, channel)
            return None
        inbox = sharded.ShardInbox(self.dist.world_size, channel)
        world = self.dist.world_size
        shard_files = {optim_shards.INDEX: json.dumps(shard.index.to_json(), indent=1).encode(),
                       optim_shards.shard_file(0, world): own,
                       **{optim_shards.shard_file(r, world): inbox.file(r) for r in range(1, world)}}
        try:
            return self._write(setup, reason, epoch,
                               self._files(setup, model_state, (shard.whole, shard.meta), shard_files))
        finally:
            inbox.drain()

    def _may_write(self, weights) -> bool:
        """On rank 0 before a save: finite weights (else a warning) and the run's lock still held
        (else UserError)."""
        if not all(bool(torch.isfinite(p).all()) for p in weights):
            self.warn(f"step {self.state.step}: weights are not finite; checkpoint not saved")
            return False
        self._check_lock()
        return True

    def _write(self, setup: TrainingSetup, reason: SaveReason, epoch: int | None,
               files: dict[str, Any]) -> Path:
        """Rank 0 writes the checkpoint's `files` where `reason` puts them, and rotates."""
        keep = setup.config.checkpoint
        path = ckpt.save_set(self.run_dir, reason, files, step=self.state.step, epoch=epoch,
                             keep_last=keep.keep_last, keep_best=keep.keep_best, protect=self.restored_from)
        if self._start is not None:
            self._start.checkpoint_saved()
        self.emit(CheckpointEvent, path=str(path), reason=reason)
        return path

    # -- evaluation and sampling ------------------------------------------

    def _built(self) -> TrainingSetup:
        """The setup, for what needs the run built (it never builds it: run() does)."""
        if self.setup_done is None:
            raise RuntimeError("the trainer is not set up yet: run() sets it up (setup() without a run)")
        return self.setup_done

    def evaluate(self) -> dict[str, float]:
        """val_loss, val_perplexity and val_accuracy now (engine.training.evaluation)."""
        def progress(done: int, total: int) -> None:
            self.emit(EvalProgressEvent, done=done, total=total)
        with self._averaged():
            return evaluation.evaluate(self._built(), progress)

    def sample(self, prompt: str, max_tokens: int) -> str:
        """Text the model writes after `prompt` now, seeded by the step (engine.training.evaluation)."""
        setup = self._built()
        with self._averaged():
            return evaluation.sample(setup, prompt, max_tokens, seed=setup.config.run.seed + self.state.step,
                                     cut_short=self._cut_sample_short)

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The weight average in the model while evaluating or sampling (training.ema_decay),
        else the weights as trained."""
        average = self._built().weight_average
        return average.in_model() if average is not None else contextlib.nullcontext()

    def _cut_sample_short(self) -> bool:
        """Stop or Ctrl+C must not wait for a long sample: cut it short; but sharded, every
        rank takes part in each forward pass, so all make the same number of them."""
        with self._lock:
            stopping = self._stop_reason is not None
        return stopping and not self.fsdp

    # -- the loop ------------------------------------------------------------

    def _handle_commands(self, setup: TrainingSetup, meter: IntervalMeter) -> None:
        self._check_lock()
        if self._writer is not None and self._writer.error is not None:
            with self._lock:   # through the stop path, so that every rank agrees to stop
                self._stop_reason = self._stop_reason or StopReason.RECORD_FAILED
        if not self._unpaused.is_set():
            paused_at = time.perf_counter()
            self.emit(PausedEvent)
            # while paused, "save now" and "sample now" are still served
            while not self._unpaused.wait(0.2):
                self._serve_requests(setup)
            paused = time.perf_counter() - paused_at
            self._pause_time += paused
            meter.exclude(paused)
            self.emit(UnpausedEvent)
        self._serve_requests(setup)

    def _serve_requests(self, setup: TrainingSetup) -> None:
        with self._lock:
            stop, save, prompt = self._stop_reason, self._save_requested, self._sample_prompt
            self._save_requested, self._sample_prompt = False, None
        if self.dist.enabled:  # a signal may reach the ranks at different steps: agree first
            asked = int(prompt is not None and self.dist.is_main)
            stop_flag, save_flag, sample_flag = distributed.agree_max(
                self.dist, [int(bool(stop)), int(save), asked], setup.device)
            stop = (stop or StopReason.INTERRUPTED) if stop_flag else None
            save = bool(save_flag)
            if self.fsdp:   # sharded, every rank takes part in sampling: rank 0's prompt, everywhere
                prompt = distributed.from_main(self.dist, prompt) if sample_flag else None
            else:
                prompt = prompt if self.dist.is_main else None
        if save:
            self.save(SaveReason.MANUAL)
        if prompt is not None:
            text = self.sample(prompt, max(setup.config.eval.sample_tokens, 200))
            self.emit(SampleEvent, text=text, prompt=prompt)   # rank 0's
        if stop:
            raise StopTraining(stop)

    def _on_eval(self, setup: TrainingSetup) -> None:
        t, state = setup.config.training, self.state
        metrics = self.evaluate()
        if not math.isfinite(metrics["val_loss"]):
            self._diverged_at = state.step
            self.emit(ErrorEvent, message=f"validation loss is {metrics['val_loss']} at step "
                      f"{state.step}; training stopped and the last good checkpoint kept",
                      nonfinite_step=state.step)
            raise StopTraining(StopReason.NONFINITE_LOSS)
        state.val_loss = val = metrics["val_loss"]
        before = state.best_val_loss
        # best is the lowest val loss seen (and best/ holds it); early stopping counts only
        # improvements of at least min_delta on it
        lowest = before is None or val < before
        improved = before is None or val < before - t.early_stopping_min_delta
        if lowest:
            state.best_val_loss = val
        state.bad_evals = 0 if improved else state.bad_evals + 1
        self.emit(EvalEvent, **metrics, best_val_loss=state.best_val_loss, improved=improved,
                  evals_without_improvement=state.bad_evals, epoch=self._epochs_at(setup, state.step))
        if lowest and t.save_best:
            self.save(SaveReason.BEST)
        e = setup.config.eval
        # rank 0 samples; sharded, every rank takes part in each forward pass and rank 0 shows it
        if e.sample_tokens and (self.dist.is_main or self.fsdp):
            self.emit(SampleEvent, text=self.sample(e.sample_prompt, e.sample_tokens),
                      prompt=e.sample_prompt)
        if self.early_stopping and state.bad_evals >= t.early_stopping_patience:
            self.emit(EarlyStopEvent, reason=f"val loss did not improve by "
                      f"{t.early_stopping_min_delta:g} for {t.early_stopping_patience} evaluations",
                      best_val_loss=state.best_val_loss)
            raise StopTraining(StopReason.EARLY_STOPPING)

    def _mfu(self, setup: TrainingSetup, tokens_per_sec: float) -> float:
        """Model FLOPs utilisation against the best peak this device has shown. Training
        that beats the remembered matmul peak proves the peak higher: it becomes the
        new peak, so the figure never passes 100%."""
        achieved = setup.flops_per_token * tokens_per_sec
        if achieved > setup.peak_flops:
            setup.peak_flops = remembered_peak(setup.device.type, setup.placement.precision,
                                               setup.device.index or 0, at_least=achieved)
        return mfu(setup.flops_per_token, tokens_per_sec, setup.peak_flops)

    def _across_ranks(self, total: torch.Tensor) -> torch.Tensor:
        """A loss sum averaged over the processes (itself without torchrun)."""
        return distributed.mean(self.dist, total)

    def train_step(self) -> torch.Tensor:
        """One optimizer step at the current state.step (which it does not advance);
        returns the summed micro-batch loss, on the device (engine.training.steps)."""
        setup = self._built()
        loss_sum, self._lr, self._grad_norm = steps.optimizer_step(
            setup, self.state.step, self.state.max_steps, self.dist, self.fsdp)
        if setup.weight_average is not None:
            setup.weight_average.update(self.state.step)
        # remember the first step whose loss was not finite, on the device: reading
        # it every step would stall a GPU; it is read at log/eval/checkpoint steps
        if self._first_bad_step is None:
            self._first_bad_step = torch.tensor(-1, device=setup.device)
        self._first_bad_step = torch.where(
            (self._first_bad_step < 0) & ~torch.isfinite(loss_sum),
            torch.tensor(self.state.step + 1, device=setup.device), self._first_bad_step)
        return loss_sum

    def _epochs_at(self, setup: TrainingSetup, step: int) -> float | None:
        """Epochs done after `step` (with training.epochs; None otherwise): the windows the
        steps drew over the windows of the training split. The same on every rank."""
        sampler, t = setup.sampler, setup.config.training
        if not isinstance(sampler, EpochSampler) or not t.epochs > 0:
            return None
        return step * t.batch_size * t.grad_accum_steps * self.dist.world_size / sampler.n_windows

    def _epoch_ended(self, setup: TrainingSetup, step: int) -> int | None:
        """The (1-based) epoch that `step` completed, or None."""
        now, before = self._epochs_at(setup, step), self._epochs_at(setup, step - 1)
        if now is None or before is None or math.floor(now) == math.floor(before):
            return None
        return math.floor(now)

    def _train_step_that_fits(self, setup: TrainingSetup) -> torch.Tensor:
        """One step; when the device runs out of memory, the step is done again with half
        the micro-batch and twice the accumulation (the same global batch, so the run's
        trajectory keeps its meaning), up to steps.OOM_HALVINGS times."""
        while True:
            try:
                return self.train_step()
            except torch.OutOfMemoryError as exc:
                self._halve_micro_batch(setup, exc)

    def _halve_micro_batch(self, setup: TrainingSetup, exc: torch.OutOfMemoryError) -> None:
        self._grad_norm = None
        message = steps.halve_micro_batch(setup, exc, step=self.state.step, halvings=self._oom_halvings,
                                          world=self.dist.world_size)
        self._oom_halvings += 1
        self.warn(message)

    def _check_finite(self, setup: TrainingSetup) -> None:
        device = setup.device
        first_bad = -1 if self._first_bad_step is None else int(self._first_bad_step)
        bad = distributed.agree_max(self.dist, [first_bad], device)[0]
        if bad >= 0:
            self._diverged_at = bad
            self.emit(ErrorEvent, message=f"loss became non-finite (nan or inf) at step {bad}; "
                      "training stopped and the last good checkpoint kept (lower "
                      "optimizer.learning_rate, set training.grad_clip, or check the data)",
                      nonfinite_step=bad)
            raise StopTraining(StopReason.NONFINITE_LOSS)

    def run(self) -> TrainResult:
        """Plan, commit and train. Raises UserError for bad input, leaving the disk as
        it was; every other failure is emitted as an `error` event and raised."""
        clean = False
        try:
            if self.dist.is_main:  # under torchrun, rank 0 alone owns the run directory
                self._continue_after_restart()
                self.plan()
                self._commit_start()
            # the start's commit point: the setup is built here, once (unless setup() built it
            # before run(), to look at it first); nothing before needs it
            result = self._run(self.setup_done if self.setup_done is not None else self.setup())
            clean = True
            return result
        except UserError as exc:
            self.emit(ErrorEvent, message=str(exc), raised=True)
            raise
        except Exception as exc:
            self.emit(ErrorEvent, message=f"{type(exc).__name__}: {exc}", raised=True)
            raise
        finally:
            if self._writer is not None:
                self._writer.close()
                if self._writer in self._listeners:
                    self._listeners.remove(self._writer)
            try:
                if self._start is not None:
                    self._start.finish()
            finally:
                self._lock_file.release()
                distributed.shutdown(self.dist, clean)

    def _open_record(self, setup: TrainingSetup) -> None:
        """Start writing the run's record, now that nothing can refuse any more:
        metrics.jsonl (cut back to the resumed step: later lines belong to steps that
        were lost), the events held back so far, and the resolved config."""
        if not self.dist.is_main:
            return
        self._check_lock()
        ckpt.clear_leftovers(self.run_dir)
        path = self.run_dir / "metrics.jsonl"
        try:
            self._writer = JsonlWriter(path, append=self.restored_from is not None)
            if self.restored_from is not None:
                dropped = self._writer.truncate_after(self.state.step)
                if dropped:
                    self.warn(f"{path}: {dropped} damaged or torn line(s) at its end were cut back")
        except OSError as exc:
            raise RecordError(f"{path}: cannot write ({exc.strerror or exc})") from None
        if self._start is not None:
            self._start.started = True
        self._listeners.remove(self._pending.append)
        self._listeners.append(self._writer)
        for event in self._pending:
            self._writer(event)
        self._pending.clear()
        self._listeners.extend(trackers(self.cfg))
        ckpt.atomic_write_text(self.run_dir / "config.toml", config_to_toml(setup.config, header=(
            "Resolved config of this run, written by llmtui.")))

    def _check_lock(self) -> None:
        """Before writing to the run: is this process still the one holding its lock?
        When not, nothing more is written there (not even the undo of a start)."""
        if not self.dist.is_main:
            return
        try:
            note = self._lock_file.check()
        except UserError:
            self._start = None
            if self._writer is not None:
                self._writer.error = self._writer.error or "lock lost"
            raise
        if note:
            self.warn(note)

    def _emit_start(self, setup: TrainingSetup, meter: IntervalMeter) -> None:
        c, data = setup.config, setup.data
        self.emit(StartEvent, run_dir=str(self.run_dir), device=str(setup.device),
                  precision=setup.placement.precision, threads=setup.threads,
                  n_params=setup.n_params, n_params_non_embedding=setup.n_params_non_embedding,
                  vocab_size=setup.gpt_config.vocab_size, max_steps=self.state.max_steps,
                  tokens_per_step=setup.tokens_per_step,
                  effective_batch=c.training.batch_size * c.training.grad_accum_steps
                  * self.dist.world_size, world_size=self.dist.world_size,
                  train_tokens=len(data.train), val_tokens=len(data.val),
                  data_dir=str(data.directory), data_reused=data.reused,
                  resumed_from=str(self.restored_from) if self.restored_from else None,
                  start_step=self.state.step,
                  optimizer_flops_per_step=setup.optimizers.extra_flops_per_step,
                  cpu_cores=meter.load.cores if meter.load is not None else None,
                  restart=self.elastic.restart)

    def _run(self, setup: TrainingSetup) -> TrainResult:
        """A segment of the run, set up: its record opened and its start told, the loop,
        the finish."""
        state = self.state
        if self.restored_from is not None and state.step >= state.max_steps:
            raise RunFinished(f"{self.run_dir}: finished at step {state.step:,} of "
                              f"{state.max_steps:,}; nothing to resume (raise training.max_steps, "
                              "e.g. --max-iters N, or training.epochs, to train it further)")
        self._open_record(setup)
        if self._restart_note:     # at the step the run continues from
            self.warn(f"{self._restart_note} at step {state.step:,}")
        for message in setup.placement.warnings:
            self.warn(message)
        meter = IntervalMeter(setup.device, load=load_meter())
        # the thread count follows the load only where llmtui chose it (run.threads = 0),
        # and under torchrun the processes of a machine share its cores already
        cpu = CpuShare(setup, warn=self.warn, auto_threads=setup.threads if (
            setup.threads and self.cfg.run.threads == 0 and not self.dist.enabled) else None)
        self._emit_start(setup, meter)
        self._start_step = state.step
        self._segment_clock = (time.perf_counter(), state.training_time)
        self._pause_time = 0.0
        return self._finish(setup, self._loop(setup, meter, cpu))

    def _loop(self, setup: TrainingSetup, meter: IntervalMeter, cpu: CpuShare) -> StopReason:
        """Train until max_steps, or until a command or a check stops it; why it stopped."""
        c, state = setup.config, self.state
        log_every, eval_every = c.logging.every_n_steps, setup.eval_every
        ckpt_every = c.checkpoint.every_n_steps
        meter.restart()
        self._first_bad_step = torch.tensor(-1, device=setup.device)
        epochs_mode = c.training.epochs > 0
        epoch_loss = LossSum(setup.device)
        setup.model.train()
        try:
            while state.step < state.max_steps:
                self._handle_commands(setup, meter)
                loss_sum = self._train_step_that_fits(setup)
                # the step's own accumulation: an out-of-memory halving may have doubled it
                micro_batches = setup.config.training.grad_accum_steps
                state.step += 1
                state.tokens_seen += setup.tokens_per_step
                meter.add(loss_sum, micro_batches, setup.tokens_per_step)
                last_step = state.step >= state.max_steps
                if epochs_mode:
                    epoch_loss.add(loss_sum, micro_batches)
                ended_epoch = self._epoch_ended(setup, state.step)
                log_now = state.step % log_every == 0 or last_step
                eval_now = state.step % eval_every == 0 or last_step or ended_epoch is not None
                save_now = ckpt_every and state.step % ckpt_every == 0
                if log_now or eval_now or save_now:
                    self._check_finite(setup)
                if log_now:
                    interval = meter.read(self._across_ranks)
                    state.train_loss = interval.loss
                    load = interval.load
                    cpu.reading(load, interval.step_seconds)
                    self.emit(TrainEvent, loss=interval.loss, lr=self._lr,
                              grad_norm=None if self._grad_norm is None else float(self._grad_norm),
                              tokens_per_sec=interval.tokens_per_sec, ms_per_step=interval.ms_per_step,
                              mfu=self._mfu(setup, interval.tokens_per_sec),
                              tokens_seen=state.tokens_seen, max_steps=state.max_steps,
                              epoch=self._epochs_at(setup, state.step),
                              cpu_busy=None if load is None else round(load.busy, 2),
                              cpu_others=None if load is None else round(load.others, 2), **memory_figures(setup.device))
                    meter.restart()
                busy = time.perf_counter()
                if eval_now:
                    self._on_eval(setup)
                if ended_epoch is not None:
                    self.emit(EpochEvent, epoch=ended_epoch, epochs=c.training.epochs,
                              train_loss=epoch_loss.mean(self._across_ranks), val_loss=state.val_loss)
                    epoch_loss = LossSum(setup.device)
                    every = c.checkpoint.every_n_epochs
                    if every and ended_epoch % every == 0:
                        self.save(SaveReason.EPOCH, epoch=ended_epoch)
                if save_now and not last_step:
                    self.save(SaveReason.STEP)
                meter.exclude(time.perf_counter() - busy)
        except StopTraining as stop:
            return StopReason(str(stop))
        return StopReason.MAX_STEPS

    def _finish(self, setup: TrainingSetup, stop_reason: StopReason) -> TrainResult:
        """The end of a segment, however it stopped: its last checkpoint, the run's
        training time, the TrainResult, the run's record of it (train_log.json) and the
        done event; a record that could not be written (a full disk) raised as
        RecordError once what could be saved is."""
        state, ckpt_every = self.state, setup.config.checkpoint.every_n_steps
        # a non-finite loss keeps the last good checkpoint as it is; a run that made no
        # step (or a resume that made none) has nothing new to save
        record_error = self._writer.error if self._writer is not None else None
        saved: Path | None = None
        if stop_reason != StopReason.NONFINITE_LOSS and state.step > self._start_step:
            try:
                if stop_reason == StopReason.MAX_STEPS and ckpt_every and state.step % ckpt_every == 0:
                    saved = self.save(SaveReason.STEP)
                else:
                    saved = self.save(SaveReason.LAST)
            except CheckpointError as exc:
                if record_error is None:
                    raise
                record_error += f"; {exc}"
        if setup.weight_average is not None and stop_reason != StopReason.NONFINITE_LOSS:
            # the caller's model ends as the checkpoint's: the average the run evaluated
            setup.weight_average.copy_to_model()
        if record_error is not None:
            # the record cannot be written (a full disk): stop, having saved what could be
            raise RecordError(f"{record_error}; training stopped at step {state.step:,}; "
                              + (f"checkpoint saved in {saved}" if saved else "no new checkpoint"))
        assert self._segment_clock is not None, "a segment is timed from its start"
        segment_time = time.perf_counter() - self._segment_clock[0] - self._pause_time
        self._count_training_time()
        steps = state.step
        if stop_reason == StopReason.NONFINITE_LOSS and self._diverged_at is not None:
            steps = self._diverged_at - 1      # the steps whose loss was still finite
        self.result = TrainResult(
            final_train_loss=state.train_loss, final_val_loss=state.val_loss,
            best_val_loss=state.best_val_loss, training_time=segment_time, steps=steps,
            tokens_seen=state.tokens_seen, stop_reason=stop_reason, run_dir=self.run_dir,
            last_checkpoint=self._on_disk("last"), best_checkpoint=self._on_disk("best"),
            metrics_path=self.run_dir / "metrics.jsonl",
            total_training_time=state.training_time if self.restored_from is not None else None,
            epoch=self._epochs_at(setup, steps))
        summary = self.result.to_json() | {"n_params": setup.n_params, "device": str(setup.device),
                                           "precision": setup.placement.precision}
        if summary["epoch"] is None:
            del summary["epoch"]   # runs without training.epochs: the record 0.1.0 wrote
        # a segment that made no step changes nothing: the record it would write holds
        # less than the one on disk (zero time, maybe no checkpoint paths)
        if self.dist.is_main and (state.step > self._start_step or self.restored_from is None):
            ckpt.atomic_write_text(self.run_dir / "train_log.json", json.dumps(summary, indent=1))
        self.emit(DoneEvent, **summary)
        return self.result

    def _on_disk(self, name: str) -> Path | None:
        """The run's checkpoint of this name when one is on disk (from this segment or
        an earlier one)."""
        path = self.run_dir / name
        return path if (path / ckpt.MANIFEST).is_file() else None
