"""Evaluate a checkpoint on a text or token file (what `llmtui eval` does).

Opened with a checkpoint (or run) directory, from the summary and from the
runs view. The evaluation runs in a thread worker that posts its progress
and its result as messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.cancellation import WorkerCancelled, cancellation_check
from llmtui.tui.messages import EvalFinished, EvalProgress, WorkerFailed
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.progress import StillProgressBar
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from llmtui.engine.inference.evaluate import EvalResult  # torch: only in the worker


def result_table(result: Any) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("tokens predicted", f"{result.tokens:,} ({result.bytes:,} bytes)")
    grid.add_row("loss", f"{result.loss:.4f} nats per token")
    grid.add_row("perplexity", f"{result.perplexity:,.2f}")
    grid.add_row("accuracy", f"{100 * result.accuracy:.1f}%")
    grid.add_row("bits per byte", "n/a" if result.bits_per_byte is None else f"{result.bits_per_byte:.4f}")
    for warning in result.warnings:   # Text: a table reads a str cell as markup, and these name files
        grid.add_row("warning", Text(warning), style="yellow")
    return grid


class EvaluateScreen(ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "evaluate"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, checkpoint: str | Path, device: str = "auto"):
        super().__init__()
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.result: EvalResult | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Vertical(id="eval-body"):
            yield Static(f"checkpoint {self.checkpoint}", id="eval-checkpoint", markup=False)
            with Horizontal(classes="eval-row"):
                yield Label("data file", classes="eval-label")
                yield Input("", compact=True, id="eval-data", placeholder="a text file or a .bin/.npy token file")
                yield Button("Browse…", id="eval-browse", compact=True)
            with Horizontal(classes="eval-row"):
                yield Label("max tokens", classes="eval-label")
                yield Input("", compact=True, type="integer", id="eval-max", placeholder="empty: all of it")
                yield Button("Evaluate", id="eval-go", variant="primary", compact=True)
            yield ErrorText(id="eval-error")
            yield StillProgressBar(total=100, show_eta=False, id="eval-progress")
            yield Static("", id="eval-result", markup=False)
        with Horizontal(id="eval-buttons"):
            yield Button("◂ Back", id="eval-back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-progress").display = False
        self.query_one("#eval-data", Input).focus()

    @on(Button.Pressed, "#eval-back")
    def _back_pressed(self) -> None:
        self.action_back()

    def action_back(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#eval-browse")
    def _browse_pressed(self) -> None:
        from llmtui.tui.screens.dialogs import BrowseScreen
        self.app.push_screen(BrowseScreen(Path.cwd(), "Choose a text or token file"), self._browsed)

    def _browsed(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#eval-data", Input).value = str(path)

    @on(Button.Pressed, "#eval-go")
    def _go_pressed(self) -> None:
        self.action_evaluate()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_evaluate()

    def action_evaluate(self) -> None:
        go = self.query_one("#eval-go", Button)
        if go.disabled:
            return
        error = self.query_one("#eval-error", ErrorText)
        data = self.query_one("#eval-data", Input).value.strip()
        max_text = self.query_one("#eval-max", Input).value.strip()
        if not data or not Path(data).expanduser().is_file():
            error.show(f"{data or 'data file'}: no such file" if data else "Give a data file to evaluate on.")
            return
        try:
            max_tokens = int(max_text) if max_text else None
            if max_tokens is not None and max_tokens < 2:
                raise ValueError
        except ValueError:
            error.show("max tokens must be a whole number of at least 2 (or empty for all)")
            return
        error.show(None)
        go.disabled = True
        bar = self.query_one("#eval-progress", StillProgressBar)
        bar.display = True
        bar.update(total=100, progress=0)
        self.query_one("#eval-result", Static).update("Evaluating…")
        self.evaluate(Path(data).expanduser(), max_tokens)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def evaluate(self, data: Path, max_tokens: int | None) -> None:
        from llmtui.engine.inference.evaluate import evaluate  # torch: off the UI thread

        stop_if_cancelled = cancellation_check()

        def progress(done: int, total: int) -> None:
            stop_if_cancelled()         # the screen went, or the app exits: stop reading
            self.post_message(EvalProgress(done, total))

        try:
            result = evaluate(self.checkpoint, data, max_tokens=max_tokens, device=self.device,
                              progress=progress)
        except WorkerCancelled:
            return
        self.post_message(EvalFinished(result))

    @on(EvalProgress)
    def _progress(self, event: EvalProgress) -> None:
        self.query_one("#eval-progress", StillProgressBar).update(total=max(1, event.total), progress=event.done)

    def _ended(self) -> None:
        self.query_one("#eval-go", Button).disabled = False
        self.query_one("#eval-progress").display = False

    @on(EvalFinished)
    def _finished(self, event: EvalFinished) -> None:
        self._ended()
        self.result = event.result
        self.query_one("#eval-result", Static).update(result_table(event.result))

    @on(WorkerFailed)
    def _failed(self, event: WorkerFailed) -> None:
        self._ended()
        self.query_one("#eval-result", Static).update(event.text)
