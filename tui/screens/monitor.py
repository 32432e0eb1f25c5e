"""The live training monitor.

Training runs in a thread worker (`TrainingRun.run`). This screen polls the
trainer's bounded EventBuffer on a timer (`app.refresh_rate`, 1 s by default)
and updates only the widgets whose figures changed; the chart redraws only
when new points arrived. Commands go to the trainer as typed commands.

Everything fits an 80x24 terminal: the side figures are compact, and the
events/sample row shrinks on short terminals (VERTICAL_BREAKPOINTS).
"""

from __future__ import annotations

import collections
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Iterable

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, RichLog, Sparkline, Static

from llmtui.engine.planning.load import contended
from llmtui.engine.training.commands import Command, Pause, SampleNow, SaveNow, SetEarlyStopping, Unpause
from llmtui.engine.training.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    ErrorEvent,
    EvalEvent,
    EvalProgressEvent,
    Event,
    PausedEvent,
    PrepareEvent,
    SampleEvent,
    StartEvent,
    TrainEvent,
    UnpausedEvent,
    WarningEvent,
)
from llmtui.eta import Eta
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss, fmt_mb, fmt_num
from llmtui.tui.messages import HistoryLoaded
from llmtui.tui.session import SampleSettings
from llmtui.tui.training import TrainingRun
from llmtui.tui.widgets.loss_chart import LossChart, LossChartKeys
from llmtui.tui.widgets.progress import StillProgressBar
from llmtui.tui.widgets.stat_panel import StatPanel
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from llmtui.tui.screens.summary import SummaryScreen

class Status(StrEnum):
    """What the monitor shows its run doing (the status line's word comes from STATUS_TEXT)."""
    STARTING = "starting"
    PREPARING = "preparing"
    RUNNING = "running"
    EVALUATING = "evaluating"
    SAMPLING = "sampling"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"


STATUS_TEXT = {
    Status.STARTING: ("◌", "starting (loading torch, checking the run)", "dim"),
    Status.PREPARING: ("◌", "preparing data", "dim"),
    Status.RUNNING: ("●", "training", "green"),
    Status.EVALUATING: ("◔", "evaluating", "cyan"),
    Status.SAMPLING: ("◔", "sampling: writing a text sample", "cyan"),
    Status.PAUSING: ("◐", "pausing at the next step", "yellow"),
    Status.PAUSED: ("❚❚", "paused", "yellow"),
    Status.STOPPING: ("◐", "stopping: saving a checkpoint", "yellow"),
    Status.DONE: ("✔", "finished", "green"),
    Status.FAILED: ("✖", "failed", "red"),
}
# the wall clock the elapsed time is read from (the trainer's events carry time.time());
# snapshot tests fix it
wall_clock = time.time
SPARK_POINTS = 60   # the last this-many train records drawn in the sparklines
# actions that command the trainer: hidden (footer, palette) once the run has ended
TRAINER_ACTIONS = frozenset({"toggle_pause", "save_now", "toggle_early_stopping", "sample_now", "stop"})


class TrainingFinished(Message):
    """To the app (it bubbles up): the monitor's run ended (finished, stopped or failed)
    and every event of it is shown. The app opens the summary, or quits when it was
    quitting."""

    def __init__(self, monitor: MonitorScreen):
        super().__init__()
        self.monitor = monitor


class TrainingStopping(Message, bubble=False):
    """From the app to a monitor: its run was told to stop (the app quits); the step
    finishes and a checkpoint is saved first."""


class MonitorScreen(LossChartKeys, ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("s", "save_now", "Save"),
        Binding("e", "toggle_early_stopping", "Early"),
        Binding("g", "sample_now", "Sample"),
        Binding("x", "stop", "Stop"),
        Binding("l", "toggle_log", "Log y"),
        Binding("m", "toggle_smoothing", "Smooth"),
        # not in the footer (full at 80 columns): the sample panel's subtitle names it
        Binding("v", "read_sample", "Read the whole sample", show=False),
        Binding("enter", "summary", "Summary"),      # a finished run's (listed once there is one)
        Binding("escape", "back", "Back (while training: browse; ctrl+t returns)", show=False),
    ]

    # `var`, not `reactive`: a reactive on a screen repaints the whole screen when it
    # changes (measured: every frame redrew every widget); the watchers below redraw
    # only what shows the value
    status: var[Status] = var(Status.STARTING)
    step: var[int] = var(0)
    max_steps: var[int] = var(0)
    early_stopping: var[bool] = var(False)

    def __init__(self, run: TrainingRun):
        super().__init__()
        self.run = run
        self.sub_title = f"training {run.cfg.run.name}"
        self.info: StartEvent | None = None
        self.last_train: TrainEvent | None = None
        self.last_eval: EvalEvent | None = None
        self.done_event: DoneEvent | None = None
        self.errors: list[str] = []
        self.polls = 0
        self._seq = 0
        self._figures_shown: str | None = None   # the figures beside the bar, as last drawn
        self._phase: str | None = None          # "evaluating 12/20 batches", "preparing data: ..."
        self._clock = Eta(run.cfg.eval, run.cfg.training.max_steps)   # the time left, from the events
        self._lr: collections.deque[float] = collections.deque(maxlen=SPARK_POINTS)
        self._tps: collections.deque[float] = collections.deque(maxlen=SPARK_POINTS)
        self._eta: str = ""
        self._started = False                   # the first training step has been seen
        self._sample_asked = False              # g was pressed; its sample has not come yet
        self._finalized = False
        self._timer: Timer | None = None
        self._memory_rows: list[tuple] = []
        self._sample: tuple[int, str] | None = None   # (step, prompt + text) of the latest sample
        self.ended_unseen = False               # the run ended while another screen was shown
        self._started_at: float | None = None   # the StartEvent's time (the trainer's clock)
        self._ended_at: float | None = None     # the DoneEvent's, or when the run ended

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="mon-status")
        with Horizontal(id="mon-progress-row"):
            yield StillProgressBar(total=None, show_eta=False, show_percentage=True, id="mon-progress")
            # elapsed time, tokens seen, epochs: beside the bar, as a progress bar shows them
            yield Static("", id="mon-figures", markup=False)
        with Horizontal(id="mon-main"):
            chart = LossChart(id="mon-chart", classes="panel")
            chart.border_title = "Loss"
            yield chart
            with Vertical(id="mon-side", classes="panel") as side:
                side.border_title = "Now"
                yield StatPanel(id="mon-stats", label_width=8)
                with Horizontal(classes="mon-spark-row"):
                    yield Label("lr", classes="mon-spark-label")
                    yield Sparkline([], id="mon-lr-spark", summary_function=max)
                with Horizontal(classes="mon-spark-row"):
                    yield Label("tok/s", classes="mon-spark-label")
                    yield Sparkline([], id="mon-tps-spark", summary_function=max)
        with Horizontal(id="mon-bottom"):
            # min_width 1: lines wrap at the panel width, whatever the terminal size
            log = RichLog(id="mon-log", max_lines=500, wrap=True, min_width=1, markup=False, classes="panel")
            log.border_title = "Events"
            yield log
            with VerticalScroll(id="mon-sample-box", classes="panel") as box:
                box.border_title = "Latest sample"
                yield Static("Samples appear here at each evaluation (eval.sample_tokens) "
                             "or when you press g.", id="mon-sample", markup=False)
        # every key must show at 80 columns: the palette (ctrl+p) is listed under ? instead
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        cfg = self.run.cfg
        self.max_steps = cfg.training.max_steps
        self.early_stopping = cfg.training.early_stopping
        chart = self.query_one(LossChart)
        chart.set_total_steps(self.max_steps)
        reference = self.app.reference_curve(cfg)
        if reference is not None:
            chart.set_reference(reference.points, f"{reference.preset} reference")
        self._render_status()
        self._render_stats()
        self._timer = self.set_interval(self.app.refresh_rate, self.poll)

    # -- polling --------------------------------------------------------------------

    def poll(self) -> None:
        """Take the events that arrived since the last poll and show them."""
        self.polls += 1
        run = self.run
        finished = run.finished.is_set()  # read before draining: no event can follow
        self._seq, events = run.events_since(self._seq)
        if events:
            self._process(events)
        elif self.status in (Status.EVALUATING, Status.SAMPLING):
            self._update_eta()     # counts down while an evaluation or a sample sends no events
        self._render_stats()
        self._render_figures()
        if finished and not self._finalized:
            self._finalize()

    def _process(self, events: list[Event]) -> None:
        train_pts, val_pts = [], []
        log = self.query_one(RichLog)
        phase = self._phase
        for e in events:
            self._clock.add(e)
            match e:
                case TrainEvent():
                    train_pts.append((e.step, e.loss))
                    self.last_train = e
                    self._lr.append(e.lr)
                    self._tps.append(e.tokens_per_sec)
                    self._started = True
                    phase = None
                    if self.status in (Status.STARTING, Status.PREPARING, Status.EVALUATING):
                        self.status = Status.RUNNING
                case EvalProgressEvent():
                    phase = f"evaluating {e.done}/{e.total} batches"
                    if self.status in (Status.RUNNING, Status.SAMPLING):
                        self.status = Status.EVALUATING
                case EvalEvent():
                    phase = None
                    if self.status in (Status.EVALUATING, Status.RUNNING):
                        # the trainer writes the evaluation's sample before the next step
                        samples = self.run.cfg.eval.sample_tokens > 0 or self._sample_asked
                        self.status = Status.SAMPLING if samples else Status.RUNNING
                    val_pts.append((e.step, e.val_loss))
                    self.last_eval = e
                    best = "  (best)" if e.improved else ""
                    log.write(Text(f"step {e.step:>6}  eval  val loss {e.val_loss:.4f}  "
                                   f"ppl {e.val_perplexity:.2f}  acc {100 * e.val_accuracy:.1f}%{best}",
                                   "bold" if best else ""))
                case PrepareEvent():
                    pct = 100 * e.done / max(1, e.total)
                    phase = f"preparing data: {e.stage} {pct:.0f}%"
                    if self.status == Status.STARTING:
                        self.status = Status.PREPARING
                case StartEvent():
                    self._on_start(e, log)
                    phase = None
                case CheckpointEvent():
                    log.write(f"step {e.step:>6}  saved {e.reason} checkpoint → {_short_path(e.path)}")
                case WarningEvent():
                    log.write(Text(f"warning: {e.message}", "yellow"))
                case SampleEvent():
                    self._sample_asked = False
                    if self.status == Status.SAMPLING:
                        self.status = Status.RUNNING
                    self._sample = (e.step, e.prompt + e.text)
                    self.query_one("#mon-sample", Static).update(f"step {e.step}:\n{e.prompt}{e.text}")
                    self.query_one("#mon-sample-box").border_subtitle = "v: read it all"
                    log.write(f"step {e.step:>6}  sample")
                case PausedEvent():
                    self.status = Status.PAUSED
                    log.write(f"step {e.step:>6}  paused")
                case UnpausedEvent():
                    if self.status in (Status.PAUSED, Status.PAUSING):
                        self.status = Status.RUNNING
                    log.write(f"step {e.step:>6}  resumed")
                case EpochEvent():
                    log.write(f"step {e.step:>6}  epoch {e.epoch}/{e.epochs:g}  train loss "
                              f"{fmt_loss(e.train_loss)}  val loss {fmt_loss(e.val_loss)}")
                case EarlyStopEvent():
                    log.write(Text(f"step {e.step:>6}  early stop: {e.reason}", "yellow"))
                case ErrorEvent():
                    self.errors.append(e.message)
                    log.write(Text(f"error: {e.message}", "bold red"))
                case DoneEvent():
                    self.done_event = e
                    self._ended_at = e.time
                    log.write(f"step {e.step:>6}  done ({e.stop_reason})")
            if e.step > self.step:
                self.step = e.step
        chart = self.query_one(LossChart)
        if train_pts or val_pts:
            chart.add_points(train_pts, val_pts)
        chart.set_current_step(self.step)
        if self._lr:
            self.query_one("#mon-lr-spark", Sparkline).data = list(self._lr)
            self.query_one("#mon-tps-spark", Sparkline).data = list(self._tps)
        if phase != self._phase:
            self._phase = phase
            self._render_status()
        self._update_progress()
        self._update_eta()

    def _on_start(self, e: StartEvent, log: RichLog) -> None:
        self.info = e
        self._started_at, self._ended_at = e.time, None
        self.max_steps = e.max_steps
        self.query_one(LossChart).set_total_steps(e.max_steps)
        if self.status in (Status.STARTING, Status.PREPARING):
            self.status = Status.RUNNING
        resumed = f", resumed at step {e.start_step:,}" if e.resumed_from else ""
        log.write(f"start  {e.device} {e.precision}, {fmt_count(e.n_params)} "
                  f"parameters, vocab {e.vocab_size:,}{resumed}")
        log.write(f"data   {e.train_tokens:,} train / {e.val_tokens:,} val tokens "
                  f"({'reused' if e.data_reused else 'prepared'})")
        if e.resumed_from:
            self.load_history(e.run_dir, e.start_step)

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def load_history(self, run_dir: str, upto: int) -> None:
        """The curves of the run's earlier segments, from its metrics.jsonl."""
        from pathlib import Path

        from llmtui.engine.training.history import read_history

        history = read_history(Path(run_dir))
        self.post_message(HistoryLoaded([p for p in history.train if p[0] <= upto],
                                        [p for p in history.val if p[0] <= upto]))

    @on(HistoryLoaded)
    def _history_loaded(self, message: HistoryLoaded) -> None:
        chart = self.query_one(LossChart)
        train, val = chart.train.points(), chart.val.points()
        chart.clear()
        chart.add_points(message.train + [(int(s), v) for s, v in train],
                         message.val + [(int(s), v) for s, v in val])

    def _update_eta(self) -> None:
        """The steps and evaluations left (llmtui.eta: pauses never inflate it)."""
        eta = ""
        left = self._clock.seconds_left(time.time())   # the trainer's events carry time.time()
        if left is not None and self.status in (Status.RUNNING, Status.PAUSING, Status.EVALUATING, Status.SAMPLING):
            eta = "ETA ~" + fmt_duration(left)
        if eta != self._eta:
            self._eta = eta
            self._render_status()

    def _update_progress(self) -> None:
        bar = self.query_one("#mon-progress", StillProgressBar)
        if self._started:
            bar.update(total=max(1, self.max_steps), progress=self.step)
        elif self.status == Status.PREPARING or not self.run.running:
            bar.update(total=None)   # indeterminate until the first step

    # -- rendering (only on change) --------------------------------------------------

    def watch_status(self) -> None:
        if not self.is_mounted:   # reactives also fire when first read, maybe before compose
            return
        self._render_status()
        self.query_one("#mon-progress", StillProgressBar).set_class(self.status == Status.FAILED, "-failed")

    def watch_step(self) -> None:
        self._render_status()

    def watch_max_steps(self) -> None:
        self._render_status()

    def watch_early_stopping(self) -> None:
        if self.is_mounted:
            self._render_stats()

    def _render_status(self) -> None:
        if not self.is_mounted:
            return
        symbol, label, style = STATUS_TEXT.get(self.status, ("?", self.status, ""))
        text = Text(no_wrap=True, overflow="ellipsis")
        detail = self._phase if self.status in (Status.PREPARING, Status.EVALUATING, Status.STARTING) and self._phase \
            else label
        text.append(f" {symbol} {detail}", style)
        text.append(f"   step {self.step:,}/{self.max_steps:,}")
        if self._eta and self.status in (Status.RUNNING, Status.PAUSING, Status.EVALUATING, Status.SAMPLING):
            text.append(f"   {self._eta}")
        if self.info is not None:
            text.append(f"   {self.info.device} · {self.info.precision} · "
                        f"{fmt_count(self.info.n_params)} params", "dim")
        # one fixed-height line: no layout pass needed
        self.query_one("#mon-status", Static).update(text, layout=False)

    def _render_figures(self) -> None:
        """Beside the bar: the time since training started (this session's, pauses
        included), the tokens seen (the whole run's, across resumes) and the epochs
        they make (the share of the training split seen)."""
        parts = []
        if self._started_at is not None:
            end = self._ended_at if self._ended_at is not None else wall_clock()
            parts.append(f"{fmt_duration(end - self._started_at)} elapsed")
        t = self.last_train
        if t is not None:
            parts.append(f"{fmt_count(t.tokens_seen)} tokens")
            if t.epoch is not None:       # training.epochs: the trainer counts them
                epochs = self.run.cfg.training.epochs
                parts.append(f"epoch {t.epoch:.2f}" + (f"/{epochs:g}" if epochs else ""))
            elif self.info is not None and self.info.train_tokens:
                parts.append(f"epoch {t.tokens_seen / self.info.train_tokens:.2f}")
        text = " · ".join(parts)
        figures = self.query_one("#mon-figures", Static)
        if text != self._figures_shown:
            # a new width needs a layout pass; the same width (seconds ticking) does not
            width_changed = len(text) != len(self._figures_shown or "")
            self._figures_shown = text
            figures.update(text, layout=width_changed)

    def _render_stats(self) -> None:
        t, ev = self.last_train, self.last_eval
        rows: list[tuple] = [("train", fmt_loss(t.loss) if t else "–")]
        if ev:
            rows.append(("val", f"{fmt_loss(ev.val_loss)}  best {fmt_loss(ev.best_val_loss)}"))
        else:
            rows.append(("val", "–"))
        lr = fmt_num(t.lr) if t else "–"
        if t and t.grad_norm is not None:
            lr += f"  grad {t.grad_norm:.2f}"
        rows.append(("lr", lr))
        rows.append(("tok/s", f"{t.tokens_per_sec:,.0f}" if t else "–"))
        busy = False
        if t is not None and t.cpu_busy is not None:
            # the machine's CPU: the cores busy, and those other processes take when they
            # leave the training threads short (then the row and the panel's title warn)
            info = self.info
            cores = info.cpu_cores if info is not None else None
            busy = contended(t.cpu_others, cores, info.threads if info is not None else None)
            of = f"/{cores}" if cores else ""
            rows.append(("cpu", f"{t.cpu_busy:.1f}{of}, others {t.cpu_others:.1f}" if busy
                         else f"{t.cpu_busy:.1f}{of} cores busy", "warn" if busy else ""))
        side = self.query_one("#mon-side")
        title = "Now · CPU busy" if busy else "Now"
        if side.border_title != title:
            side.border_title = title
        rows.append(("ms/step", f"{t.ms_per_step:,.1f}  MFU {100 * t.mfu:.0f}%" if t else "–"))
        if t and t.memory_allocated_mb is not None:
            rows.append(("torch", f"{fmt_mb(t.memory_allocated_mb)} (peak {fmt_mb(t.memory_peak_mb)})"))
        elif t and t.memory_rss_mb is not None:
            rows.append(("process", fmt_mb(t.memory_rss_mb)))
        else:
            rows.append(("memory", "–"))
        if self.info is not None and self.run.running:  # measured only while training (torch is loaded)
            self._memory_rows = self.app.memory_probe(self.info.device)
        rows.extend(self._memory_rows[:1])
        rows.append(("early", "stop on" if self.early_stopping else "stop off"))
        self.query_one("#mon-stats", StatPanel).set_rows(rows)

    # -- the end ---------------------------------------------------------------------

    def _finalize(self) -> None:
        self._finalized = True
        if self._started_at is not None and self._ended_at is None:
            self._ended_at = wall_clock()    # failed or stopped without a done record
            self._render_figures()
        if self._timer is not None:
            self._timer.stop()
        run = self.run
        log = self.query_one(RichLog)
        if run.result is not None:
            self.status = Status.DONE
        elif run.error is not None:
            self.status = Status.FAILED
            if run.error not in self.errors:
                log.write(Text(f"error: {run.error}", "bold red"))
            if not run.error_is_notice:
                self.notify(run.error, title="Training failed", severity="error", timeout=10, markup=False)
        else:  # cancelled before it started
            self.status = Status.DONE if self.done_event else Status.FAILED
        self._update_progress()
        self.refresh_bindings()   # the trainer's keys leave the footer
        if self.app.background_monitor() is self:   # the user is elsewhere: the top line tells
            self.ended_unseen = True
        self.post_message(TrainingFinished(self))

    # -- commands --------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in TRAINER_ACTIONS and not self.run.running:
            return False   # nothing left to pause, save or stop: not listed, not run
        if action == "summary":
            return self.finished_run is not None
        return True

    @property
    def finished_run(self) -> DoneEvent | None:
        """The done record of a run that finished (not one that failed), once every
        event is shown; None before, and for a run that failed."""
        return self.done_event if self._finalized and self.run.result is not None else None

    def summary_screen(self) -> SummaryScreen | None:
        """The summary of the finished run (None: see `finished_run`), sampling with the
        run's own settings."""
        from llmtui.tui.screens.summary import SummaryScreen

        done = self.finished_run
        if done is None:
            return None
        return SummaryScreen(done, SampleSettings.of_run(self.run.cfg, done.device),
                             final_val_step=self.last_eval.step if self.last_eval is not None else None)

    def action_summary(self) -> None:
        screen = self.summary_screen()
        if screen is not None:
            self.app.push_screen(screen)

    def _command(self, command: Command) -> bool:
        if not self.run.running:
            self.notify("Training is not running.", severity="warning")
            return False
        if not self.run.send(command):
            self.notify("Training is still starting; try again in a moment.", severity="warning")
            return False
        return True

    def action_toggle_pause(self) -> None:
        if self.status in (Status.PAUSED, Status.PAUSING):
            if self._command(Unpause()):
                self.status = Status.RUNNING
        elif self.status in (Status.RUNNING, Status.EVALUATING, Status.SAMPLING, Status.STARTING, Status.PREPARING):
            if self._command(Pause()):
                self.status = Status.PAUSING

    def action_save_now(self) -> None:
        paused = self.status == Status.PAUSED
        if self._command(SaveNow()):
            self.notify("Saving a checkpoint now (training is paused)." if paused
                        else "A checkpoint will be saved after the current step.")

    def action_toggle_early_stopping(self) -> None:
        if self._command(SetEarlyStopping(not self.early_stopping)):
            self.early_stopping = not self.early_stopping
            self.query_one(RichLog).write(f"early stopping {'on' if self.early_stopping else 'off'}")

    def action_sample_now(self) -> None:
        paused = self.status == Status.PAUSED
        if self._command(SampleNow()):
            self._sample_asked = True
            if self.status == Status.RUNNING:    # written before the next step: sampling until it comes
                self.status = Status.SAMPLING
            self.notify("Sampling now (training is paused)." if paused
                        else "A sample will be generated after the current step.")

    def action_stop(self) -> None:
        if not self.run.running:
            self.notify("Training is not running.", severity="warning")
            return
        from llmtui.tui.screens.dialogs import ConfirmScreen

        self.app.push_screen(ConfirmScreen("Stop training? The current step finishes and a "
                                           "checkpoint is saved; you can resume later.",
                                           yes="Stop", title="Stop training"), self._confirmed_stop)

    def _confirmed_stop(self, yes: bool | None) -> None:
        if yes and self.run.running:
            self.run.stop()
            self.status = Status.STOPPING

    @on(TrainingStopping)
    def _stopping(self) -> None:
        if self.run.running:
            self.status = Status.STOPPING

    def action_read_sample(self) -> None:
        """The latest sample whole, in a dialog that scrolls (the panel cuts it)."""
        if self._sample is None:
            self.notify("No sample yet: one comes at each evaluation, or press g.", severity="warning")
            return
        from llmtui.tui.screens.dialogs import TextScreen

        step, text = self._sample
        self.app.push_screen(TextScreen(f"Sample at step {step:,} ({len(text):,} characters)", text))

    def action_back(self) -> None:
        if self.run.running:
            # browse while it trains: the home screen opens over this one, which goes on
            # polling; ctrl+t (or the top line) comes back
            self.app.push_screen(self.app.get_default_screen())
            self.notify("Training goes on. Ctrl+T (or the top line) brings its monitor back.",
                        title=f"{self.run.cfg.run.name} is training")
        else:
            self.app.pop_screen()

    def on_screen_resume(self) -> None:
        self.ended_unseen = False

    def progress_line(self) -> str | None:
        """The run in one line, for the title of a screen shown over this one."""
        symbol, label, _ = STATUS_TEXT.get(self.status, ("?", self.status, ""))
        name = self.run.cfg.run.name
        if self.run.running:
            return f"{symbol} {name} {label.split(':')[0]}: step {self.step:,}/{self.max_steps:,}"
        if self.ended_unseen:      # it ended while the user was elsewhere: until they look
            return f"{symbol} {name} {label} at step {self.step:,}"
        return None

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Toggle log scale", "Loss chart y axis: linear or log", self.action_toggle_log)
        yield SystemCommand("Toggle smoothing", "Loss chart: smoothed or raw train loss",
                            self.action_toggle_smoothing)
        yield SystemCommand("Read the whole sample", "The latest sample in full, in a window that scrolls",
                            self.action_read_sample)
        if not self.run.running:
            return
        yield SystemCommand("Pause / resume training", "Pause at the next step, or continue",
                            self.action_toggle_pause)
        yield SystemCommand("Save checkpoint now", "Write the `last` checkpoint after this step",
                            self.action_save_now)
        yield SystemCommand("Toggle early stopping", "Stop when val loss stops improving",
                            self.action_toggle_early_stopping)
        yield SystemCommand("Sample now", "Generate text from the current model", self.action_sample_now)
        yield SystemCommand("Stop training", "Save a checkpoint and end the run (asks first)",
                            self.action_stop)


def _short_path(path: str) -> str:
    """The checkpoint's folder as `<run>/<checkpoint>` (full paths are in the summary)."""
    parts = str(path).replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
