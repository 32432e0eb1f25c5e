"""After training: the run's summary and a prompt box to sample from the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import getters, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss
from llmtui.tui.widgets.sample_box import SampleBox
from llmtui.tui.widgets.title_bar import TitleBar

STOP_REASONS = {"max_steps": "reached max_steps", "early_stopping": "early stopping",
                "stopped": "stopped by you", "interrupted": "interrupted",
                "nonfinite_loss": "loss became non-finite"}
TITLES = {"max_steps": "Training finished", "early_stopping": "Training finished (early stop)",
          "stopped": "Training stopped", "interrupted": "Training interrupted",
          "nonfinite_loss": "Training diverged"}


def summary_renderable(s: dict[str, Any]) -> Group:
    """Results side by side (fits 80 columns), then the paths."""
    reason = str(s.get("stop_reason"))
    good = reason in ("max_steps", "early_stopping")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(min_width=14)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("result", Text(STOP_REASONS.get(reason, reason), "green" if good else "yellow"),
                 "final train loss", fmt_loss(s.get("final_train_loss")))
    # the last evaluation may be older than the last step (a stop between evaluations)
    val_step = s.get("final_val_step")
    val_label = "final val loss" if val_step in (None, s.get("steps")) else f"val loss (step {val_step:,})"
    grid.add_row("steps", f"{s.get('steps', 0):,}", val_label, fmt_loss(s.get("final_val_loss")))
    grid.add_row("tokens seen", fmt_count(s.get("tokens_seen")),
                 "best val loss", Text(fmt_loss(s.get("best_val_loss")), "bold"))
    resumed = s.get("total_training_time") is not None   # this segment resumed an earlier run
    grid.add_row("training time", fmt_duration(s.get("training_time")) + (" this segment" if resumed else ""),
                 "device", f"{s.get('device', 'n/a')} ({s.get('precision', '')})"
                 if s.get("device") else "n/a")
    if resumed:
        grid.add_row("in all", fmt_duration(s["total_training_time"]), "", "")
    if s.get("n_params"):
        grid.add_row("parameters", fmt_count(s["n_params"]), "", "")
    if s.get("epoch") is not None:      # training.epochs: passes over the training data
        grid.add_row("epochs", f"{s['epoch']:.2f}", "", "")
    paths = Table.grid(padding=(0, 1))
    paths.add_column(style="dim", no_wrap=True)
    paths.add_column(ratio=1)
    # Text, not str: a table reads str cells as markup, and paths are the user's
    paths.add_row("run folder", Text(str(s.get("run_dir") or "n/a")))
    paths.add_row("last checkpoint", Text(str(s.get("last_checkpoint") or "none")))
    paths.add_row("best checkpoint", Text(str(s.get("best_checkpoint") or "none")))
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

    def __init__(self, summary: dict[str, Any], sample_defaults: dict[str, Any] | None = None):
        super().__init__()
        self.summary = summary
        self.sample_defaults = sample_defaults or {}

    def compose(self) -> ComposeResult:
        s = self.summary
        checkpoint = s.get("best_checkpoint") or s.get("last_checkpoint")
        yield TitleBar()
        with VerticalScroll(id="sum-body"):
            with Vertical(id="sum-box", classes="panel") as box:
                box.border_title = TITLES.get(str(s.get("stop_reason")), "Training ended")
                yield Static(summary_renderable(s), id="sum-text")
            with Vertical(id="sum-sample", classes="panel") as sample:
                sample.border_title = "Sample from the model"
                yield SampleBox(Path(checkpoint) if checkpoint else None, self.sample_defaults)
        with Horizontal(id="sum-buttons"):
            yield Button("◂ Monitor", id="back", compact=True)
            yield Button("Generate…", id="generate", compact=True, disabled=not self.has_checkpoint)
            yield Button("Evaluate…", id="evaluate", compact=True, disabled=not self.has_checkpoint)
            yield Button("New run", id="new-run", compact=True)
            yield Button("Quit", id="quit", compact=True, variant="error")
        yield Footer(compact=True)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.summary.get("best_checkpoint") or self.summary.get("last_checkpoint"))

    @property
    def checkpoint(self) -> Path:
        """The checkpoint to use: the best one, else the last."""
        checkpoint = self.summary.get("best_checkpoint") or self.summary.get("last_checkpoint")
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
            self.app.open_evaluate(self.checkpoint, self.sample_defaults.get("device", "auto"))

    def action_generate(self) -> None:
        if self.has_checkpoint:
            self.app.open_generate(self.checkpoint, self.sample_defaults)

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
