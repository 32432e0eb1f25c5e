"""Several runs' val loss on one chart (selected in the runs view)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from llmtui.tui.messages import RunsCompared
from llmtui.tui.widgets.loss_chart import LossChart
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors


class CompareScreen(ReportsWorkerErrors, Screen):
    SUB_TITLE = "compare"
    BINDINGS = [Binding("l", "toggle_log", "Log y"), Binding("escape", "back", "Back")]

    def __init__(self, run_dirs: list[Path]):
        super().__init__()
        self.run_dirs = run_dirs

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static(f" val loss of {len(self.run_dirs)} runs: " + ", ".join(p.name for p in self.run_dirs),
                     id="compare-head", markup=False)
        chart = LossChart(id="compare-chart", classes="panel")
        chart.border_title = "Val loss"
        yield chart
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p works; ? lists it

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        from llmtui.engine.training.history import read_history

        self.post_message(RunsCompared([(p.name, read_history(p).val) for p in self.run_dirs]))

    @on(RunsCompared)
    def _compared(self, message: RunsCompared) -> None:
        self.query_one(LossChart).set_runs(message.curves)

    def action_toggle_log(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_scale = not chart.log_scale

    def action_back(self) -> None:
        self.app.pop_screen()
