"""The runs view: every run in a folder, its state and results, sortable; open
one, compare several.

Listing reads only each run's small files (engine.training.runs.list_runs), so a
folder of hundreds of runs opens at once; metrics are read only for the runs
opened or compared. The list refreshes every few seconds while shown, so a run
that another process trains shows as running, then as finished.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from llmtui.engine.training.runs import RunInfo
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss
from llmtui.tui.messages import RunsListed
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

STATUS_STYLE = {"running": "bold green", "finished": "green", "stopped": "yellow",
                "interrupted": "yellow", "diverged": "red"}
# column key, label, sort key
COLUMNS: list[tuple[str, str, Callable[[RunInfo], Any] | None]] = [   # key, heading, sort key
    ("pick", " ", None),
    ("name", "name", lambda r: r.name.lower()),
    ("status", "status", lambda r: r.status),
    ("steps", "steps", lambda r: r.steps),
    ("best", "best val", lambda r: _missing_last(r.best_val_loss)),
    ("last", "last val", lambda r: _missing_last(r.last_val_loss)),
    ("tokens", "tokens", lambda r: r.tokens_seen or 0),
    ("time", "time", lambda r: r.training_time or 0),
    ("date", "date", lambda r: -r.modified),
    ("model", "model", lambda r: r.model),
    ("tokenizer", "tokenizer", lambda r: r.tokenizer),
]
REFRESH_SECONDS = 3.0


def _missing_last(value: float | None) -> float:
    return float("inf") if value is None else value


class RunsTable(DataTable):
    """The runs, a row each; ← and → scroll a whole column at a time (a DataTable with
    a row cursor scrolls one character per key, and an 80-column terminal shows the
    columns only up to "date")."""

    def _column_starts(self) -> list[int]:
        starts, x = [], 0
        for column in self.ordered_columns:
            starts.append(x)
            x += column.get_render_width(self)
        return starts

    @property
    def hidden_columns(self) -> list[str]:
        """The labels of the columns that do not show whole now."""
        right = self.scroll_x + self.scrollable_content_region.width
        hidden, x = [], 0
        for column in self.ordered_columns:
            width = column.get_render_width(self)
            if x < self.scroll_x or x + width > right:
                hidden.append(str(column.label).strip())
            x += width
        return [label for label in hidden if label]

    def action_cursor_right(self) -> None:
        later = [x for x in self._column_starts() if x > self.scroll_x]
        if later:
            self.scroll_to(x=min(later[0], self.max_scroll_x), animate=False)

    def action_cursor_left(self) -> None:
        earlier = [x for x in self._column_starts() if x < self.scroll_x]
        self.scroll_to(x=earlier[-1] if earlier else 0, animate=False)

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        if isinstance(self.screen, RunsScreen):   # the hint names the columns out of view
            self.call_later(self.screen.show_hint)


class RunsScreen(ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "runs"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("space", "pick", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("s", "sort", "Sort"),
        Binding("f", "folder", "Folder"),
        Binding("d", "delete", "Delete"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        self.runs: list[RunInfo] = []
        self.picked: set[str] = set()
        self.sort_column = "date"
        self.sort_reverse = False

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="runs-folder", markup=False)
        table = RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        for key, label, _ in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="runs-hint")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p works; ? lists it

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.refresh_runs()
        self.set_interval(REFRESH_SECONDS, self.refresh_runs)

    def on_screen_resume(self) -> None:
        self.refresh_runs()

    def on_resize(self) -> None:
        self.call_after_refresh(self.show_hint)

    # -- the list ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def refresh_runs(self) -> None:
        from llmtui.engine.training.runs import list_runs

        started = time.perf_counter()
        runs = list_runs(self.folder)
        self.post_message(RunsListed(runs, time.perf_counter() - started))

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        self.listed_in = message.seconds
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        sort_keys = {k: f for k, _, f in COLUMNS if f is not None}
        self.runs.sort(key=sort_keys[self.sort_column], reverse=self.sort_reverse)
        rows = {r.name: self._cells(r) for r in self.runs}
        if list(rows) == [key.value for key in table.rows]:
            # the same runs in the same order (the refresh every few seconds): cells change
            # in place, so the row and the columns scrolled to stay (clear() resets them)
            for name, cells in rows.items():
                for (key, _, _), cell in zip(COLUMNS, cells):
                    if table.get_cell(name, key) != cell:
                        table.update_cell(name, key, cell)
        else:
            table.clear()
            for name, cells in rows.items():
                table.add_row(*cells, key=name)
            if self.runs:
                table.move_cursor(row=min(max(keep, 0), len(self.runs) - 1))
        arrow = "▼" if self.sort_reverse else "▲"
        self.query_one("#runs-folder", Static).update(
            f" {len(self.runs)} run(s) in {self.folder}   sorted by {self.sort_column} {arrow}")
        self.show_hint()
        self.call_after_refresh(self.show_hint)    # the columns' widths are known after a refresh

    def _cells(self, r: RunInfo) -> tuple:
        status = r.status
        if r.holder is not None and r.holder.alive:
            status += f" (PID {r.holder.pid})"
        return ("✓" if r.name in self.picked else " ", Text(r.name), Text(status, STATUS_STYLE.get(r.status, "")),
                f"{r.steps:,}" + (f"/{r.max_steps:,}" if r.max_steps else ""),
                fmt_loss(r.best_val_loss), fmt_loss(r.last_val_loss), fmt_count(r.tokens_seen),
                fmt_duration(r.training_time), time.strftime("%Y-%m-%d %H:%M", time.localtime(r.modified)),
                Text(r.model), Text(r.tokenizer))

    def show_hint(self) -> None:
        hint = ("no runs here yet: train one from the hardware screen, or open another folder (f)"
                if not self.runs else f"{len(self.picked)} selected for comparison (space, then c)"
                if self.picked else "enter opens a run; space selects runs to compare (c)")
        hidden = self.query_one(RunsTable).hidden_columns if self.runs else []
        if hidden:   # a narrow terminal: say what else there is, and how to see it (first: it may be cut)
            hint = f"←/→: {', '.join(hidden)}; {hint}"
        self.query_one("#runs-hint", Static).update(f" {hint}")

    def _current(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    # -- actions --------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key is None or key == "pick":
            return
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self._fill()

    def action_open(self) -> None:
        run = self._current()
        if run is not None:
            self.app.open_run(run.path)

    def action_pick(self) -> None:
        run = self._current()
        if run is not None:
            self.picked.symmetric_difference_update({run.name})
            self._fill()

    def action_sort(self) -> None:
        keys = [k for k, _, f in COLUMNS if f is not None]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_reverse = False
        self._fill()

    def action_compare(self) -> None:
        picked = [r for r in self.runs if r.name in self.picked]
        if len(picked) < 2:
            self.notify("Select two or more runs with space first.", severity="warning")
            return
        from llmtui.tui.screens.compare import CompareScreen
        self.app.push_screen(CompareScreen([r.path for r in picked]))

    def action_folder(self) -> None:
        from llmtui.tui.screens.dialogs import PathScreen

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.folder = path
                self.picked.clear()
                self.refresh_runs()

        self.app.push_screen(PathScreen("Open a folder of runs", str(self.folder), "Open",
                                        "checkpoints", want_folder=True), chosen)

    def action_delete(self) -> None:
        run = self._current()
        if run is None:
            return
        if run.status == "running":
            self.notify(f"{run.name} is being trained; stop it first.", severity="warning", markup=False)
            return
        from llmtui.tui.screens.dialogs import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(run)

        self.app.push_screen(ConfirmScreen(
            f"Delete run {run.name}? Its checkpoints ({len(run.checkpoints)}), metrics, summary and "
            f"config go; other files in {run.path} are kept.", yes="Delete", title="Delete run"), answered)

    def _delete(self, run: RunInfo) -> None:
        from llmtui.engine.errors import UserError
        from llmtui.engine.training.runs import delete_run

        try:
            kept = delete_run(run.path)
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=10, markup=False)
            return
        self.picked.discard(run.name)
        note = f"; kept {', '.join(kept)}" if kept else ""
        self.notify(f"Deleted run {run.name}{note}.", markup=False)
        self.refresh_runs()

    def action_back(self) -> None:
        self.app.pop_screen()
