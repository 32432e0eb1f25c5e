"""`llmtui --run`: train in this process and report progress on the terminal.

A rich progress bar with ETA on a terminal, plain lines otherwise (CI, pipes,
log files). Ctrl-C or SIGTERM finishes the current step, saves `last` and
exits 130; SIGHUP (the terminal or SSH session closed) does the same and exits
129; a second signal exits at once (checkpoint writes are atomic, so nothing on
disk is left half-written). Output that cannot be written (`| head`, a terminal
that hung up) is dropped, noted once in metrics.jsonl, and training goes on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import IO, TYPE_CHECKING, Any, cast

from llmtui.engine.training.commands import StopReason
from llmtui.engine.training.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    PrepareEvent,
    SampleEvent,
    StartEvent,
    TrainEvent,
    WarningEvent,
)
from llmtui.exits import EXIT_FAILED, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_OK, SafeStream, fail, say

if TYPE_CHECKING:
    from rich.progress import TaskID

    from llmtui.eta import Eta


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# what each stage of data preparation does; its progress counts bytes of the corpus
# (of the token files for "verify" and "split")
PREPARE_STAGES = {"hash": "reading the corpus", "verify": "checking the prepared token files",
                  "train tokenizer": "training the tokenizer", "scan": "collecting the characters",
                  "tokenize": "tokenizing", "split": "setting the val tokens apart"}


def prepare_stage(stage: str) -> str:
    return PREPARE_STAGES.get(stage, stage)


def fmt_bytes_done(done: int, total: int) -> str:
    """'12.3 of 45.6 MiB': both in the unit of the total."""
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if total >= div:
            return f"{done / div:.1f} of {total / div:.1f} {unit}"
    return f"{done:,} of {total:,} bytes"


def optimizer_line(e: StartEvent) -> str | None:
    """Muon's extra work, in words: mfu counts the model's FLOPs only, so a user
    comparing mfu with the step time is told what else each step computes."""
    if not e.optimizer_flops_per_step:
        return None
    return (f"optimizer: Muon orthogonalizes each update (Newton-Schulz), "
            f"{e.optimizer_flops_per_step / 1e9:.2f} GFLOP a step that mfu does not count")


def eta_text(seconds: float | None) -> str:
    """The time left as the bar and the log lines show it."""
    return "measuring…" if seconds is None else "~" + fmt_duration(seconds)


def train_line(e: TrainEvent) -> str:
    parts = [f"step {e.step}/{e.max_steps}", f"loss {e.loss:.4f}", f"lr {e.lr:.2e}"]
    if e.grad_norm is not None:
        parts.append(f"grad {e.grad_norm:.2f}")
    parts += [f"{e.tokens_per_sec:,.0f} tok/s", f"{e.ms_per_step:.1f} ms/step",
              f"mfu {100 * e.mfu:.1f}%"]
    if e.memory_peak_mb is not None:
        parts.append(f"mem {e.memory_peak_mb:,.0f} MB")
    elif e.memory_rss_mb is not None:
        parts.append(f"rss {e.memory_rss_mb:,.0f} MB")
    return " | ".join(parts)


def eval_line(e: EvalEvent) -> str:
    return (f"eval step {e.step} | val loss {e.val_loss:.4f} | ppl {e.val_perplexity:.2f} | "
            f"acc {100 * e.val_accuracy:.1f}% | best {e.best_val_loss:.4f}")


def describe(e: Event) -> str | None:
    """The one line shown for an event, or None for events shown otherwise."""
    match e:
        case StartEvent():
            resumed = f", resumed from {e.resumed_from} at step {e.start_step}" if e.resumed_from else ""
            procs = f", {e.world_size} processes" if e.world_size > 1 else ""
            threads = f", {e.threads} threads" if e.threads else ""
            optimizer = optimizer_line(e)
            optimizer = f"\n{optimizer}" if optimizer else ""
            return (f"run {e.run_dir} on {e.device} ({e.precision}{threads}{procs}){resumed}\n"
                    f"model {e.n_params / 1e6:.2f}M parameters ({e.n_params_non_embedding / 1e6:.2f}M "
                    f"non-embedding), vocab {e.vocab_size}; effective batch {e.effective_batch} "
                    f"sequences = {e.tokens_per_step:,} tokens/step; data {e.train_tokens:,} train / "
                    f"{e.val_tokens:,} val tokens ({'reused' if e.data_reused else 'prepared'} in "
                    f"{e.data_dir}){optimizer}")
        case TrainEvent():
            return train_line(e)
        case EvalEvent():
            return eval_line(e)
        case EpochEvent():   # as 001's trainer prints it
            return f"Epoch {e.epoch}/{e.epochs:g}\nTrain loss: {_fmt_loss(e.train_loss)}\nVal loss: {_fmt_loss(e.val_loss)}"
        case CheckpointEvent():
            return f"saved {e.reason} checkpoint {e.path}"
        case WarningEvent():
            return f"warning: {e.message}"
        case EarlyStopEvent():
            return f"early stop at step {e.step}: {e.reason}"
        case SampleEvent():
            return f"sample at step {e.step}:\n{e.prompt}{e.text}"
        case ErrorEvent(raised=False):
            # errors that end run() by an exception are reported once, by the caller
            return f"error: {e.message}"
        case DoneEvent():
            # a run of training.epochs that trained them all says so, not "max_steps"
            reason = (f"{e.epoch:.3g} epochs" if e.stop_reason == StopReason.MAX_STEPS and e.epoch is not None
                      else e.stop_reason)
            return (f"done: {e.steps} steps in {fmt_duration(e.training_time)} ({reason}); "
                    f"final train loss {_fmt_loss(e.final_train_loss)}, best val loss "
                    f"{_fmt_loss(e.best_val_loss)}; last checkpoint {e.last_checkpoint}")
    return None


def _fmt_loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class OutputLost:
    """Tells the trainer, once per stream, that its console output is gone."""

    def __init__(self):
        self.trainer = None

    def __call__(self, name: str):
        def broken(exc: OSError) -> None:
            if self.trainer is not None:
                self.trainer.warn(f"{name} cannot be written ({exc.strerror or exc}); training goes "
                                  "on without console output (this record has every figure)")
        return broken


class RunClock:
    """The time left of the run being reported, from its events (llmtui.eta, the
    monitor's: steps left at the recent ms/step, plus the evaluations left).
    The run's [eval] settings come from the trainer, known once it exists."""

    def __init__(self, lost: "OutputLost"):
        self.lost = lost
        self.eta: Eta | None = None
        self.done = False

    def add(self, e: Event) -> None:
        if isinstance(e, StartEvent):
            from types import SimpleNamespace

            from llmtui.eta import Eta  # pure: no Textual

            cfg = getattr(self.lost.trainer, "cfg", None)
            eval_cfg = getattr(cfg, "eval", None) or SimpleNamespace(every_n_steps=0, every_n_epochs=0,
                                                                     sample_tokens=0)
            self.eta = Eta(eval_cfg, e.max_steps)
        if self.eta is not None:
            self.eta.add(e)
        self.done = self.done or isinstance(e, DoneEvent)

    def seconds_left(self) -> float | None:
        if self.done:
            return 0.0
        return None if self.eta is None else self.eta.seconds_left()


class PlainReporter:
    def __init__(self, stream=None, errors=None, lost: OutputLost | None = None):
        lost = lost or OutputLost()
        self.lost = lost
        self.stream = SafeStream(stream or sys.stdout, lost("standard output"))
        self.errors = SafeStream(errors or sys.stderr, lost("standard error"))
        self._last_prepare = 0.0
        self._last_prepare_line = ""
        self.clock = RunClock(lost)

    def __call__(self, e: Event) -> None:
        if isinstance(e, PrepareEvent):
            now = time.monotonic()
            if now - self._last_prepare > 2 or e.done >= e.total:
                pct = 100 * e.done / max(1, e.total)
                progress = f"preparing data: {prepare_stage(e.stage)} {pct:.0f}% ({fmt_bytes_done(e.done, e.total)})"
                # a stage read in one chunk reports its end twice (its progress, then its
                # end): one line says it
                if progress != self._last_prepare_line:
                    self._last_prepare, self._last_prepare_line = now, progress
                    print(progress, file=self.stream, flush=True)
            return
        self.clock.add(e)
        line = describe(e)
        if line and isinstance(e, TrainEvent) and e.step < e.max_steps:
            line += f" | ETA {eta_text(self.clock.seconds_left())}"
        if line:
            # errors go to stderr, where scripts and CI look for them
            stream = self.errors if isinstance(e, ErrorEvent) else self.stream
            print(line, file=stream, flush=True)

    def close(self) -> None:
        pass


class RichReporter:
    """A progress bar with ETA, metric lines printed above it.

    The ETA is the run's own (RunClock), counted down between events: Rich's
    estimate needs two updates within 30 s, so with slow steps it read -:--:--
    for most of a run."""

    def __init__(self, lost: OutputLost | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column
        from rich.text import Text

        class EtaColumn(ProgressColumn):
            def render(self, task) -> Text:
                left, at = task.fields.get("eta"), task.fields.get("eta_at")
                if left is None:
                    return Text("ETA " + eta_text(None) if task.fields.get("counts_down") else "",
                                style="progress.remaining")
                return Text("ETA " + eta_text(max(0.0, left - (time.monotonic() - at))),
                            style="progress.remaining")

        lost = lost or OutputLost()
        self.lost = lost
        self.clock = RunClock(lost)
        # a SafeStream is file enough for a Console: write and flush are what it calls
        self.console = Console(file=cast(IO[str], SafeStream(sys.stdout, lost("standard output"))))
        self.errors = Console(file=cast(IO[str], SafeStream(sys.stderr, lost("standard error"))))
        # one line at any width (a bar that wraps is drawn again on every refresh): the
        # bar and the figures share what the count, the ETA and the elapsed time leave;
        # {task.fields[count]} is steps, or bytes while the data is prepared
        fixed: dict[str, Any] = dict(table_column=Column(no_wrap=True))
        self.progress = Progress(TextColumn("[bold]{task.description}", **fixed),
                                 BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=6)),
                                 TextColumn("{task.fields[count]}", **fixed), EtaColumn(**fixed),
                                 TimeElapsedColumn(**fixed),
                                 TextColumn("{task.fields[info]}", table_column=Column(
                                     ratio=3, no_wrap=True, overflow="ellipsis")),
                                 console=self.console, refresh_per_second=2, expand=True)
        self.progress.start()
        self.task: TaskID | None = None
        self.prepare_task: TaskID | None = None

    def __call__(self, e: Event) -> None:
        if isinstance(e, PrepareEvent):
            count = fmt_bytes_done(e.done, e.total)
            if self.prepare_task is None:
                self.prepare_task = self.progress.add_task("preparing data", total=e.total, count=count,
                                                           info="")
            self.progress.update(self.prepare_task, completed=e.done, total=e.total, count=count,
                                 info=prepare_stage(e.stage))
            return
        self.clock.add(e)
        if isinstance(e, StartEvent):
            if self.prepare_task is not None:
                self.progress.remove_task(self.prepare_task)
            self.task = self.progress.add_task("training", total=e.max_steps, completed=e.start_step,
                                               count=_steps(e.start_step, e.max_steps), info="",
                                               counts_down=True, eta=None, eta_at=None)
        if self.task is not None and not isinstance(e, StartEvent):
            left = self.clock.seconds_left()
            fields: dict[str, Any] = {"eta": left, "eta_at": time.monotonic()} if left is not None else {}
            if isinstance(e, TrainEvent):
                fields.update(completed=e.step, total=e.max_steps, count=_steps(e.step, e.max_steps),
                              info=f"{e.ms_per_step:,.0f} ms/step  loss {e.loss:.4f}  "
                                   f"{e.tokens_per_sec:,.0f} tok/s")
            self.progress.update(self.task, **fields)
        line = describe(e)
        if line and isinstance(e, ErrorEvent):
            self.errors.print(line, highlight=False, markup=False)
        elif line:
            self.progress.console.print(line, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def _steps(step: int, max_steps: int) -> str:
    return f"step {step:,}/{max_steps:,}"


def run_headless(config: str, overrides: list[str], *, resume: str | None, overwrite: bool,
                 force: bool = False, plain: bool = False) -> int:
    # installed first, before torch loads: a signal during start-up exits 130 too
    interrupts = Interrupts()
    interrupts.install()
    try:
        return _train(config, overrides, resume=resume, overwrite=overwrite, force=force,
                      plain=plain, interrupts=interrupts)
    except StartupInterrupted as exc:
        say(f"\nllmtui: {exc.signal_name} before training started; nothing was written", sys.stderr)
        return interrupts.exit_code
    finally:
        interrupts.restore()


def _train(config: str, overrides: list[str], *, resume: str | None, overwrite: bool, force: bool,
           plain: bool, interrupts: "Interrupts") -> int:
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.errors import Interrupted, RunFinished, UserError

    try:
        cfg = load_config(config, overrides)
    except UserError as exc:
        return fail(str(exc))

    from llmtui.engine.training.trainer import Trainer

    mode = "plain" if plain else cfg.logging.progress
    use_bar = mode == "bar" or (mode == "auto" and sys.stdout.isatty())
    reporter = RichReporter() if use_bar else PlainReporter()
    trainer = Trainer(cfg, resume_from=resume, overwrite=overwrite, force=force, listeners=[reporter])
    reporter.lost.trainer = trainer
    interrupts.trainer = trainer
    try:
        result = trainer.run()
    except RunFinished as exc:
        reporter.close()
        say(f"llmtui: {exc}")
        return EXIT_OK
    except Interrupted as exc:
        reporter.close()
        say(f"llmtui: {exc}", sys.stderr)
        return interrupts.exit_code or exc.exit_code
    except UserError as exc:
        reporter.close()
        return fail(str(exc), code=exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - a bug, not bad input: report it in one line too
        reporter.close()
        return fail(f"training failed: {type(exc).__name__}: {exc}", code=EXIT_FAILED)
    reporter.close()
    if interrupts.count:
        return interrupts.exit_code
    if result.stop_reason == StopReason.NONFINITE_LOSS:
        return EXIT_FAILED
    return EXIT_OK


class StartupInterrupted(Exception):
    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP: the first finishes the step, saves `last` and exits
    130 (129 for SIGHUP); the second exits at once (checkpoint writes are atomic).
    Before the trainer exists there is nothing to save: start-up ends at once."""

    SIGNALS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_INTERRUPTED,
               signal.SIGHUP: EXIT_HANGUP}

    def __init__(self):
        self.trainer = None
        self.count = 0
        self.exit_code = EXIT_INTERRUPTED
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.count == 0:
            self.exit_code = self.SIGNALS.get(signum, EXIT_INTERRUPTED)
        if self.trainer is None:
            raise StartupInterrupted(name)
        self.count += 1
        if self.count > 1:
            say("\nllmtui: interrupted again; exiting now", sys.stderr)
            os._exit(self.exit_code)
        say(f"\nllmtui: {name}: finishing this step and saving a checkpoint "
            "(press Ctrl-C again to exit at once)", sys.stderr)
        self.trainer.stop("interrupted")

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
