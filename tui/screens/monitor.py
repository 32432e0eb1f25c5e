"""The live training monitor.

Training runs in a thread worker (`TrainingRun.run`). This screen polls the
trainer's bounded EventBuffer on a timer (`app.refresh_rate`, 1 s by default)
and updates only the widgets whose figures changed; the chart redraws only
when new points arrived. Commands go to the trainer's thread-safe methods.
"""

from __future__ import annotations

import collections
from typing import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, RichLog, Static

from llmtui.engine.training.commands import Command, Pause, SampleNow, SaveNow, SetEarlyStopping, Unpause
from llmtui.engine.training.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    PausedEvent,
    PrepareEvent,
    SampleEvent,
    StartEvent,
    TrainEvent,
    UnpausedEvent,
    WarningEvent,
)
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss, fmt_mb, fmt_num
from llmtui.tui.training import TrainingRun
from llmtui.tui.widgets.loss_chart import LossChart
from llmtui.tui.widgets.stat_panel import StatPanel
from llmtui.tui.widgets.title_bar import TitleBar

STATUS_TEXT = {
    "starting": ("◌", "starting (loading torch, preparing data)", "dim"),
    "preparing": ("◌", "preparing data", "dim"),
    "running": ("●", "training", "green"),
    "pausing": ("◐", "pausing at the next step", "yellow"),
    "paused": ("❚❚", "paused", "yellow"),
    "stopping": ("◐", "stopping: saving a checkpoint", "yellow"),
    "done": ("✔", "finished", "green"),
    "failed": ("✖", "failed", "red"),
}


class MonitorScreen(Screen):
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume"),
        Binding("s", "save_now", "Save ckpt"),
        Binding("e", "toggle_early_stopping", "Early stop"),
        Binding("g", "sample_now", "Sample"),
        Binding("x", "stop", "Stop"),
        Binding("l", "toggle_log", "Log y"),
        Binding("m", "toggle_smoothing", "Smooth"),
        Binding("escape", "back", "Back", show=False),
    ]

    status: reactive[str] = reactive("starting")
    step: reactive[int] = reactive(0)
    max_steps: reactive[int] = reactive(0)
    early_stopping: reactive[bool] = reactive(False)

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
        self._rate: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self._eta: str = ""
        self._finalized = False
        self._timer = None
        self._memory_rows: list[tuple] = []

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="mon-status")
        yield ProgressBar(total=None, show_eta=False, show_percentage=True, id="mon-progress")
        with Horizontal(id="mon-main"):
            chart = LossChart(id="mon-chart", classes="panel")
            chart.border_title = "Loss"
            yield chart
            with VerticalScroll(id="mon-side", classes="panel") as side:
                side.border_title = "Now"
                yield StatPanel(id="mon-stats", label_width=11)
        with Horizontal(id="mon-bottom"):
            log = RichLog(id="mon-log", max_lines=500, wrap=True, min_width=20, markup=False,
                          classes="panel")
            log.border_title = "Events"
            yield log
            with VerticalScroll(id="mon-sample-box", classes="panel") as box:
                box.border_title = "Latest sample"
                yield Static("Samples appear here at each evaluation (eval.sample_tokens).",
                             id="mon-sample", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        cfg = self.run.cfg
        self.max_steps = cfg.training.max_steps
        self.early_stopping = cfg.training.early_stopping
        self.query_one(LossChart).set_total_steps(self.max_steps)
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
        self._render_stats()
        if finished and not self._finalized:
            self._finalize()

    def _process(self, events: list[Event]) -> None:
        train_pts, val_pts = [], []
        log = self.query_one(RichLog)
        prepare = None
        for e in events:
            match e:
                case TrainEvent():
                    train_pts.append((e.step, e.loss))
                    self.last_train = e
                    self._rate.append((e.time, e.step))
                    if self.status in ("starting", "preparing"):
                        self.status = "running"
                case EvalEvent():
                    val_pts.append((e.step, e.val_loss))
                    self.last_eval = e
                    best = "  (best)" if e.improved else ""
                    log.write(Text(f"step {e.step:>6}  eval  val loss {e.val_loss:.4f}  "
                                   f"ppl {e.val_perplexity:.2f}  acc {100 * e.val_accuracy:.1f}%{best}",
                                   "bold" if best else ""))
                case PrepareEvent():
                    prepare = e
                    if self.status == "starting":
                        self.status = "preparing"
                case StartEvent():
                    self.info = e
                    self.max_steps = e.max_steps
                    self.query_one(LossChart).set_total_steps(e.max_steps)
                    if self.status in ("starting", "preparing"):
                        self.status = "running"
                    resumed = f", resumed at step {e.start_step}" if e.resumed_from else ""
                    log.write(f"start  {e.device} {e.precision}, {fmt_count(e.n_params)} "
                              f"parameters, vocab {e.vocab_size:,}{resumed}")
                    log.write(f"data   {e.train_tokens:,} train / {e.val_tokens:,} val tokens "
                              f"({'reused' if e.data_reused else 'prepared'})")
                case CheckpointEvent():
                    log.write(f"step {e.step:>6}  saved {e.reason} checkpoint → {_short_path(e.path)}")
                case WarningEvent():
                    log.write(Text(f"warning: {e.message}", "yellow"))
                case SampleEvent():
                    self.query_one("#mon-sample", Static).update(f"step {e.step}:\n{e.prompt}{e.text}")
                    log.write(f"step {e.step:>6}  sample")
                case PausedEvent():
                    self.status = "paused"
                    self._rate.clear()
                    log.write(f"step {e.step:>6}  paused")
                case UnpausedEvent():
                    if self.status in ("paused", "pausing"):
                        self.status = "running"
                    log.write(f"step {e.step:>6}  resumed")
                case EarlyStopEvent():
                    log.write(Text(f"step {e.step:>6}  early stop: {e.reason}", "yellow"))
                case ErrorEvent():
                    self.errors.append(e.message)
                    log.write(Text(f"error: {e.message}", "bold red"))
                case DoneEvent():
                    self.done_event = e
                    log.write(f"step {e.step:>6}  done ({e.stop_reason})")
            if e.step > self.step:
                self.step = e.step
        if prepare is not None and self.status == "preparing":
            bar = self.query_one("#mon-progress", ProgressBar)
            bar.update(total=max(1, prepare.total), progress=prepare.done)
            self._render_status(f"preparing data: {prepare.stage}")
        if train_pts or val_pts:
            self.query_one(LossChart).add_points(train_pts, val_pts)
        self._update_eta()

    def _update_eta(self) -> None:
        eta = ""
        if len(self._rate) >= 2 and self.status in ("running", "pausing"):
            (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
            if s1 > s0 and t1 > t0:
                eta = "ETA ~" + fmt_duration((self.max_steps - self.step) * (t1 - t0) / (s1 - s0))
        if eta != self._eta:
            self._eta = eta
            self._render_status()

    # -- rendering (only on change) --------------------------------------------------

    def watch_status(self) -> None:
        self._render_status()

    def watch_step(self) -> None:
        if self.status != "preparing":
            self.query_one("#mon-progress", ProgressBar).update(total=max(1, self.max_steps),
                                                                 progress=self.step)
        self._render_status()

    def watch_max_steps(self) -> None:
        self.watch_step()

    def watch_early_stopping(self) -> None:
        self._render_stats()

    def _render_status(self, detail: str | None = None) -> None:
        if not self.is_mounted:
            return
        symbol, label, style = STATUS_TEXT.get(self.status, ("?", self.status, ""))
        text = Text()
        text.append(f" {symbol} {detail or label}", style)
        text.append(f"   step {self.step:,}/{self.max_steps:,}")
        if self._eta and self.status in ("running", "pausing"):
            text.append(f"   {self._eta}")
        if self.info is not None:
            text.append(f"   {self.info.device} · {self.info.precision} · "
                        f"{fmt_count(self.info.n_params)} params", "dim")
        # one fixed-height line: no layout pass needed
        self.query_one("#mon-status", Static).update(text, layout=False)

    def _render_stats(self) -> None:
        rows: list[tuple] = []
        t = self.last_train
        rows.append(("Loss", "", "heading"))
        rows.append(("train", fmt_loss(t.loss) if t else "–"))
        ev = self.last_eval
        rows.append(("val", fmt_loss(ev.val_loss) if ev else "–"))
        rows.append(("best val", fmt_loss(ev.best_val_loss) if ev else "–"))
        rows.append(("Optimizer", "", "heading"))
        rows.append(("lr", fmt_num(t.lr) if t else "–"))
        if t and t.grad_norm is not None:
            rows.append(("grad norm", f"{t.grad_norm:.3f}"))
        rows.append(("Throughput", "", "heading"))
        rows.append(("tokens/s", f"{t.tokens_per_sec:,.0f}" if t else "–"))
        rows.append(("ms/step", f"{t.ms_per_step:,.1f}" if t else "–"))
        rows.append(("MFU", f"{100 * t.mfu:.1f}%" if t else "–"))
        rows.append(("Memory", "", "heading"))
        if t and t.memory_allocated_mb is not None:
            rows.append(("torch", fmt_mb(t.memory_allocated_mb)))
            rows.append(("torch peak", fmt_mb(t.memory_peak_mb)))
        elif t and t.memory_rss_mb is not None:
            rows.append(("process", fmt_mb(t.memory_rss_mb)))
        if self.info is not None and self.run.running:  # measured only while training (torch is loaded)
            self._memory_rows = self.app.memory_probe(self.info.device)
        rows.extend(self._memory_rows)
        rows.append(("Controls", "", "heading"))
        rows.append(("early stop", "on" if self.early_stopping else "off"))
        self.query_one("#mon-stats", StatPanel).set_rows(rows)

    # -- the end ---------------------------------------------------------------------

    def _finalize(self) -> None:
        self._finalized = True
        if self._timer is not None:
            self._timer.stop()
        run = self.run
        log = self.query_one(RichLog)
        if run.result is not None:
            self.status = "done"
            self.app.training_finished(self)
        elif run.error is not None:
            self.status = "failed"
            if run.error not in self.errors:
                log.write(Text(f"error: {run.error}", "bold red"))
            self.notify(run.error, title="Training failed", severity="error", timeout=10)
            self.app.training_finished(self)
        else:  # cancelled before it started
            self.status = "done" if self.done_event else "failed"
            self.app.training_finished(self)

    # -- commands --------------------------------------------------------------------

    def _command(self, command: Command) -> bool:
        if not self.run.running:
            self.notify("Training is not running.", severity="warning")
            return False
        if not self.run.send(command):
            self.notify("Training is still starting; try again in a moment.", severity="warning")
            return False
        return True

    def action_toggle_pause(self) -> None:
        if self.status in ("paused", "pausing"):
            if self._command(Unpause()):
                self.status = "running"
        elif self.status in ("running", "starting", "preparing"):
            if self._command(Pause()):
                self.status = "pausing"

    def action_save_now(self) -> None:
        if self._command(SaveNow()):
            when = " when training resumes" if self.status in ("paused", "pausing") else ""
            self.notify(f"A checkpoint will be saved{when} at the next step.")

    def action_toggle_early_stopping(self) -> None:
        if self._command(SetEarlyStopping(not self.early_stopping)):
            self.early_stopping = not self.early_stopping
            self.query_one(RichLog).write(f"early stopping {'on' if self.early_stopping else 'off'}")

    def action_sample_now(self) -> None:
        if self._command(SampleNow()):
            self.notify("A sample will be generated at the next step.")

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
            self.status = "stopping"

    def action_toggle_log(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_scale = not chart.log_scale

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = not chart.smoothing

    def action_back(self) -> None:
        if self.run.running:
            self.notify("Training is running: stop it first (x) or quit (ctrl+q).", severity="warning")
        else:
            self.app.pop_screen()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Pause / resume training", "Pause at the next step, or continue",
                            self.action_toggle_pause)
        yield SystemCommand("Save checkpoint now", "Write the `last` checkpoint at the next step",
                            self.action_save_now)
        yield SystemCommand("Toggle early stopping", "Stop when val loss stops improving",
                            self.action_toggle_early_stopping)
        yield SystemCommand("Sample now", "Generate text from the current model", self.action_sample_now)
        yield SystemCommand("Stop training", "Save a checkpoint and end the run (asks first)",
                            self.action_stop)
        yield SystemCommand("Toggle log scale", "Loss chart y axis: linear or log", self.action_toggle_log)
        yield SystemCommand("Toggle smoothing", "Loss chart: smoothed or raw train loss",
                            self.action_toggle_smoothing)


def _short_path(path: str) -> str:
    """The checkpoint's folder as `<run>/<checkpoint>` (full paths are in the summary)."""
    parts = str(path).replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
