"""Several runs' loss on one chart (selected in the runs view): val loss, or
train loss (t); log scale (l) and smoothing (m) as in the monitor. A run
with nothing to draw yet (no evaluation) is named, not left out silently."""

from __future__ import annotations

from pathlib import Path

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.messages import RunsCompared
from llmtui.tui.widgets.loss_chart import LossChart, LossChartKeys
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors


class CompareScreen(LossChartKeys, ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "compare"
    BINDINGS = [Binding("t", "toggle_metric", "Train/val"), Binding("l", "toggle_log", "Log y"),
                Binding("m", "toggle_smoothing", "Smooth"), Binding("escape", "back", "Back")]

    def __init__(self, run_dirs: list[Path]):
        super().__init__()
        self.run_dirs = run_dirs
        self.metric = "val"
        self.curves: list[tuple[str, list, list]] | None = None   # (name, train, val) once read

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="compare-head", markup=False)
        chart = LossChart(id="compare-chart", classes="panel")
        chart.border_title = "Val loss"
        yield chart
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p works; ? lists it

    def on_mount(self) -> None:
        self._show()
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        from llmtui.engine.training.history import read_history

        curves = []
        for path in self.run_dirs:
            history = read_history(path)
            curves.append((path.name, history.train, history.val))
        self.post_message(RunsCompared(curves))

    @on(RunsCompared)
    def _compared(self, message: RunsCompared) -> None:
        self.curves = message.curves
        self._show()

    def _show(self) -> None:
        val = self.metric == "val"
        what = "val loss" if val else "train loss"
        names = ", ".join(p.name for p in self.run_dirs)
        head = f" {what} of {len(self.run_dirs)} runs: {names}"
        chart = self.query_one(LossChart)
        chart.border_title = "Val loss" if val else "Train loss"
        if self.curves is not None:
            drawn = [(name, v if val else t) for name, t, v in self.curves]
            missing = [name for name, points in drawn if not points]
            if missing:
                head += f"   (not drawn, {'no evaluation' if val else 'no step'} yet: {', '.join(missing)})"
            chart.set_runs([(name, points) for name, points in drawn if points], smoothed=not val)
        self.query_one("#compare-head", Static).update(head)

    def action_toggle_metric(self) -> None:
        self.metric = "train" if self.metric == "val" else "val"
        self._show()

    def action_back(self) -> None:
        self.app.pop_screen()
