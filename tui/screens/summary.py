"""After training: the run's summary and a prompt box to sample from the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from llmtui.tui.fields import escape_text, unescape_text
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss
from llmtui.tui.messages import SampleReady, WorkerFailed
from llmtui.tui.widgets.title_bar import TitleBar

STOP_REASONS = {"max_steps": "reached max_steps", "early_stopping": "early stopping",
                "stopped": "stopped by you", "nonfinite_loss": "loss became non-finite"}


def summary_renderable(s: dict[str, Any]) -> Group:
    """Results side by side (fits 80 columns), then the paths."""
    reason = s.get("stop_reason")
    good = reason in ("max_steps", "early_stopping")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(min_width=14)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("result", Text(STOP_REASONS.get(reason, str(reason)), "green" if good else "yellow"),
                 "final train loss", fmt_loss(s.get("final_train_loss")))
    grid.add_row("steps", f"{s.get('steps', 0):,}", "final val loss", fmt_loss(s.get("final_val_loss")))
    grid.add_row("tokens seen", fmt_count(s.get("tokens_seen")),
                 "best val loss", Text(fmt_loss(s.get("best_val_loss")), "bold"))
    grid.add_row("training time", fmt_duration(s.get("training_time")),
                 "device", f"{s.get('device', 'n/a')} ({s.get('precision', '')})"
                 if s.get("device") else "n/a")
    if s.get("n_params"):
        grid.add_row("parameters", fmt_count(s["n_params"]), "", "")
    paths = Table.grid(padding=(0, 1))
    paths.add_column(style="dim", no_wrap=True)
    paths.add_column(ratio=1)
    paths.add_row("run folder", str(s.get("run_dir") or "n/a"))
    paths.add_row("last checkpoint", str(s.get("last_checkpoint") or "none"))
    paths.add_row("best checkpoint", str(s.get("best_checkpoint") or "none"))
    return Group(grid, Text(""), paths)


class SummaryScreen(Screen):
    SUB_TITLE = "summary"
    BINDINGS = [
        Binding("escape", "back", "Monitor"),
        Binding("ctrl+n", "new_run", "New run"),
    ]

    def __init__(self, summary: dict[str, Any], sample_defaults: dict[str, Any] | None = None):
        super().__init__()
        self.summary = summary
        self.sample_defaults = sample_defaults or {}

    def compose(self) -> ComposeResult:
        d = self.sample_defaults
        yield TitleBar()
        with VerticalScroll(id="sum-body"):
            with Vertical(id="sum-box", classes="panel") as box:
                box.border_title = "Training finished"
                yield Static(summary_renderable(self.summary), id="sum-text")
            with Vertical(id="sum-sample", classes="panel") as sample:
                sample.border_title = "Sample from the model"
                with Horizontal(classes="sum-row"):
                    yield Label("prompt", classes="sum-label")
                    yield Input(escape_text(d.get("prompt", "\n")), compact=True, id="sample-prompt",
                                placeholder="text to continue (\\n for a new line)")
                with Horizontal(classes="sum-row"):
                    yield Label("tokens", classes="sum-label")
                    yield Input(str(d.get("tokens", 200)), compact=True, id="sample-tokens",
                                type="integer")
                    yield Label("temperature", classes="sum-label")
                    yield Input(str(d.get("temperature", 0.8)), compact=True, id="sample-temperature",
                                type="number")
                    yield Button("Sample", id="sample", variant="primary", compact=True,
                                 disabled=not self.has_checkpoint)
                yield Static("" if self.has_checkpoint else "No checkpoint was saved, so there is "
                             "nothing to sample from.", id="sample-output", markup=False)
        with Horizontal(id="sum-buttons"):
            yield Button("◂ Monitor", id="back", compact=True)
            yield Button("New run", id="new-run", compact=True)
            yield Button("Quit", id="quit", compact=True, variant="error")
        yield Footer()

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.summary.get("best_checkpoint") or self.summary.get("last_checkpoint"))

    @on(Button.Pressed, "#sample")
    def _sample_pressed(self) -> None:
        self.action_sample()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#new-run")
    def _new_run_pressed(self) -> None:
        self.action_new_run()

    @on(Button.Pressed, "#quit")
    def _quit_pressed(self) -> None:
        self.app.action_quit_app()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_sample()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_sample(self) -> None:
        button = self.query_one("#sample", Button)
        if button.disabled:
            return
        try:
            tokens = int(self.query_one("#sample-tokens", Input).value)
            temperature = float(self.query_one("#sample-temperature", Input).value)
            if not 1 <= tokens <= 100000 or not 0 < temperature <= 10:
                raise ValueError
        except ValueError:
            self.query_one("#sample-output", Static).update(
                "tokens must be 1..100000 and temperature > 0 and <= 10")
            return
        prompt = unescape_text(self.query_one("#sample-prompt", Input).value)
        path = Path(self.summary.get("best_checkpoint") or self.summary.get("last_checkpoint"))
        button.disabled = True
        self.query_one("#sample-output", Static).update("Sampling…")
        self.sample(path, prompt, tokens, temperature)

    @work(thread=True, exclusive=True, group="sample", exit_on_error=False)
    def sample(self, path: Path, prompt: str, tokens: int, temperature: float) -> None:
        from llmtui.engine.training.sampling import sample_from_checkpoint  # torch: off the UI thread

        d = self.sample_defaults
        text = sample_from_checkpoint(path, prompt, tokens, temperature=temperature,
                                      top_k=d.get("top_k", 200), seed=d.get("seed", 1337),
                                      device=d.get("device", "auto"))
        self.post_message(SampleReady(prompt + text))

    @on(SampleReady)
    def _sampled(self, event: SampleReady) -> None:
        self.query_one("#sample-output", Static).update(event.text)
        self.query_one("#sample", Button).disabled = False

    @on(WorkerFailed)
    def _sample_failed(self, event: WorkerFailed) -> None:
        self.query_one("#sample-output", Static).update(event.text)
        self.query_one("#sample", Button).disabled = False
