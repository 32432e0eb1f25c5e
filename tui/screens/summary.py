"""After training: the run's summary and a prompt box to sample from the model."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import getters, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from llmtui.engine.training.commands import StopReason
from llmtui.engine.training.events import DoneEvent
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss
from llmtui.tui.session import SampleSettings
from llmtui.tui.widgets.sample_box import SampleBox
from llmtui.tui.widgets.title_bar import TitleBar

# keyed by StopReason (a StrEnum): the done event's string finds its entry
STOP_REASONS: dict[str, str] = {
    StopReason.MAX_STEPS: "reached max_steps", StopReason.EARLY_STOPPING: "early stopping",
    StopReason.STOPPED: "stopped by you", StopReason.INTERRUPTED: "interrupted",
    StopReason.NONFINITE_LOSS: "loss became non-finite"}
TITLES: dict[str, str] = {
    StopReason.MAX_STEPS: "Training finished", StopReason.EARLY_STOPPING: "Training finished (early stop)",
    StopReason.STOPPED: "Training stopped", StopReason.INTERRUPTED: "Training interrupted",
    StopReason.NONFINITE_LOSS: "Training diverged"}


def summary_renderable(done: DoneEvent, final_val_step: int | None = None) -> Group:
    """Results side by side (fits 80 columns), then the paths. `final_val_step`: the step
    of the last evaluation, when known (final_val_loss is from it)."""
    reason = done.stop_reason
    good = reason in (StopReason.MAX_STEPS, StopReason.EARLY_STOPPING)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(min_width=14)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("result", Text(STOP_REASONS.get(reason, reason), "green" if good else "yellow"),
                 "final train loss", fmt_loss(done.final_train_loss))
    # the last evaluation may be older than the last step (a stop between evaluations)
    val_label = ("final val loss" if final_val_step in (None, done.steps)
                 else f"val loss (step {final_val_step:,})")
    grid.add_row("steps", f"{done.steps:,}", val_label, fmt_loss(done.final_val_loss))
    grid.add_row("tokens seen", fmt_count(done.tokens_seen),
                 "best val loss", Text(fmt_loss(done.best_val_loss), "bold"))
    resumed = done.total_training_time is not None   # this segment resumed an earlier run
    grid.add_row("training time", fmt_duration(done.training_time) + (" this segment" if resumed else ""),
                 "device", f"{done.device} ({done.precision})" if done.device else "n/a")
    if done.total_training_time is not None:
        grid.add_row("in all", fmt_duration(done.total_training_time), "", "")
    if done.n_params:
        grid.add_row("parameters", fmt_count(done.n_params), "", "")
    if done.epoch is not None:      # training.epochs: passes over the training data
        grid.add_row("epochs", f"{done.epoch:.2f}", "", "")
    paths = Table.grid(padding=(0, 1))
    paths.add_column(style="dim", no_wrap=True)
    paths.add_column(ratio=1)
    # Text, not str: a table reads str cells as markup, and paths are the user's
    paths.add_row("run folder", Text(done.run_dir or "n/a"))
    paths.add_row("last checkpoint", Text(done.last_checkpoint or "none"))
    paths.add_row("best checkpoint", Text(done.best_checkpoint or "none"))
    return Group(grid, Text(""), paths)


class SummaryScreen(Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in

    SUB_TITLE = "summary"
    BINDINGS = [
        Binding("escape", "back", "Monitor"),
        Binding("ctrl+g", "generate", "Generate"),
        Binding("ctrl+e", "evaluate", "Evaluate"),
        Binding("ctrl+n", "new_run", "New run"),
    ]

    def __init__(self, done: DoneEvent, sample: SampleSettings | None = None, *,
                 final_val_step: int | None = None):
        """`done`: the run's done event; `sample`: what sampling starts with;
        `final_val_step`: the step of the run's last evaluation, when known."""
        super().__init__()
        self.done = done
        self.sample = sample or SampleSettings()
        self.final_val_step = final_val_step

    def compose(self) -> ComposeResult:
        checkpoint = self.done.best_checkpoint or self.done.last_checkpoint
        yield TitleBar()
        with VerticalScroll(id="sum-body"):
            with Vertical(id="sum-box", classes="panel") as box:
                box.border_title = TITLES.get(self.done.stop_reason, "Training ended")
                yield Static(summary_renderable(self.done, self.final_val_step), id="sum-text")
            with Vertical(id="sum-sample", classes="panel") as sample:
                sample.border_title = "Sample from the model"
                yield SampleBox(Path(checkpoint) if checkpoint else None, self.sample)
        with Horizontal(id="sum-buttons"):
            yield Button("◂ Monitor", id="back", compact=True)
            yield Button("Generate…", id="generate", compact=True, disabled=not self.has_checkpoint)
            yield Button("Evaluate…", id="evaluate", compact=True, disabled=not self.has_checkpoint)
            yield Button("New run", id="new-run", compact=True)
            yield Button("Quit", id="quit", compact=True, variant="error")
        yield Footer(compact=True)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.done.best_checkpoint or self.done.last_checkpoint)

    @property
    def checkpoint(self) -> Path:
        """The checkpoint to use: the best one, else the last."""
        checkpoint = self.done.best_checkpoint or self.done.last_checkpoint
        assert checkpoint, "the buttons that use it are disabled without a checkpoint"
        return Path(checkpoint)

    @on(Button.Pressed, "#generate")
    def _generate_pressed(self) -> None:
        self.action_generate()

    @on(Button.Pressed, "#evaluate")
    def _evaluate_pressed(self) -> None:
        self.action_evaluate()

    def action_evaluate(self) -> None:
        if self.has_checkpoint:
            self.app.open_evaluate(self.checkpoint, self.sample.device)

    def action_generate(self) -> None:
        if self.has_checkpoint:
            self.app.open_generate(self.checkpoint, self.sample)

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#new-run")
    def _new_run_pressed(self) -> None:
        self.action_new_run()

    @on(Button.Pressed, "#quit")
    def _quit_pressed(self) -> None:
        self.app.action_quit_app()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_sample(self) -> None:
        self.query_one(SampleBox).sample()
