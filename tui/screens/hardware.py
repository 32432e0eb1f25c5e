"""The first screen: what this machine has, the preset that fits it, where to start.

Detection runs in a thread worker (it imports torch and asks NVML), so the
screen paints at once with "detecting…" and fills in when the answer comes.
"""

from __future__ import annotations

from pathlib import Path

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content  # plain text: an option's str is markup
from textual.screen import Screen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    LoadingIndicator,
    OptionList,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from llmtui.engine.errors import UserError
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.messages import HardwareDetected, HardwareReady, WorkerFailed
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.hardware_view import HardwareView, recommendation_renderable
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

RECENT_RUNS = 5   # runs listed here; the runs view (r) has them all


class HardwareScreen(ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "hardware"
    BINDINGS = [
        Binding("u", "use_recommended", "Use recommended"),
        Binding("r", "runs", "Runs"),
        Binding("o", "focus_file", "Open TOML"),
        # leaves a text box (the TOML path), so the letter keys above work again
        Binding("escape", "leave_input", "Leave the text box", show=False),
    ]

    def compose(self) -> ComposeResult:
        from llmtui.engine.config.presets import preset_names

        presets = preset_names()
        yield TitleBar()
        with Horizontal(id="hw-body"):
            with VerticalScroll(id="hw-machine", classes="panel") as machine:
                machine.border_title = "This machine"
                yield LoadingIndicator(id="hw-loading")
                yield Static("Detecting hardware…", id="hw-detecting", markup=False)
                yield HardwareView(id="hw-info")
            with VerticalScroll(id="hw-start", classes="panel") as start:
                start.border_title = "Start"
                yield Button("Detecting…", id="use-recommended", variant="primary", disabled=True)
                yield Static("", id="hw-recommendation")
                yield Label("Another preset", classes="hw-label")
                with Horizontal(classes="hw-row"):
                    yield Select([(p, p) for p in presets], value=presets[0] if presets else Select.NULL,
                                 allow_blank=False, compact=True, id="preset-select")
                    yield Button("Open", id="open-preset", compact=True)
                yield Label("A TOML config file", classes="hw-label")
                with Horizontal(classes="hw-row"):
                    yield Input(placeholder="path/to/config.toml", compact=True, id="toml-path")
                    yield Button("Open", id="open-toml", compact=True)
                yield ErrorText(id="toml-error")
                yield Label("Recent runs", classes="hw-label")
                yield OptionList(id="run-list")
                yield Button("All runs… (r)", id="all-runs", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        app = self.app
        if app.hardware is not None and app.recommendation is not None:
            self._show(app.hardware, app.recommendation)
        else:
            # after the first frame: the worker's imports (torch) hold the GIL for long
            # stretches, and started at mount they delayed the first paint by ~0.4 s
            self.call_after_refresh(self.detect)
        self.call_after_refresh(self.action_rescan)

    # -- detection -------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False)
    def detect(self) -> None:
        hw = self.app.hardware
        if hw is None:
            from llmtui.engine.planning.hardware import detect
            hw = detect()
        rec = self.app.recommendation
        if rec is None:
            from llmtui.engine.planning.recommend import recommend
            rec = recommend(hw)
        self.post_message(HardwareDetected(hw, rec))

    @on(HardwareDetected)
    def _detected(self, event: HardwareDetected) -> None:
        self.app.hardware, self.app.recommendation = event.hardware, event.recommendation
        self._show(event.hardware, event.recommendation)
        self.post_message(HardwareReady())

    @on(WorkerFailed)
    def _detection_failed(self, event: WorkerFailed) -> None:
        self.app.detection_error = event.text
        self.post_message(HardwareReady())
        self._remove_spinner()
        self.query_one("#hw-detecting", Static).update(
            f"Hardware detection failed: {event.text}\nYou can still start from any preset.")
        self.query_one("#use-recommended", Button).label = "Detection failed"

    def _remove_spinner(self) -> None:
        # removed, not hidden: a hidden LoadingIndicator keeps redrawing 16 times a
        # second, waking the UI thread that training shares the CPU with
        for spinner in self.query("#hw-loading"):
            spinner.remove()

    def _show(self, hw, rec) -> None:
        self._remove_spinner()
        self.query_one("#hw-detecting").display = False
        self.query_one(HardwareView).show(hw)
        self.query_one("#hw-recommendation", Static).update(recommendation_renderable(rec))
        button = self.query_one("#use-recommended", Button)
        button.label = f"Start from {rec.preset} ▸"
        button.disabled = False
        if rec.preset in self._preset_options():
            self.query_one("#preset-select", Select).value = rec.preset
        if self.focused is None or isinstance(self.focused, Select):
            button.focus()

    def _preset_options(self) -> list[str]:
        from llmtui.engine.config.presets import preset_names
        return preset_names()

    # -- recent runs: opening one shows it, never starts it ------------------------

    def action_rescan(self) -> None:
        from llmtui.engine.training.runs import list_runs

        runs = list_runs(self.app.runs_dir)[:RECENT_RUNS]
        self._runs = {r.name: r for r in runs}
        options = self.query_one("#run-list", OptionList)
        options.clear_options()
        if not runs:
            options.add_option(Option(Content(f"no runs in {self.app.runs_dir}/"), id="-", disabled=True))
        for r in runs:
            options.add_option(Option(Content(f"{r.name}  {r.status}, step {r.steps:,}"), id=r.name))
        if runs:
            options.highlighted = 0

    def on_screen_resume(self) -> None:
        # back from another screen: the list may have changed, and the keys of this
        # screen must work (a focused text box would swallow `u`)
        self.action_rescan()
        if isinstance(self.focused, Input) or self.focused is None:
            self.query_one("#use-recommended", Button).focus()

    @on(OptionList.OptionSelected, "#run-list")
    def _run_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id in self._runs:
            self.app.open_run(self._runs[event.option.id].path)

    @on(Button.Pressed, "#all-runs")
    def _all_runs_pressed(self) -> None:
        self.action_runs()

    def action_runs(self) -> None:
        self.app.open_runs()

    # -- choices ------------------------------------------------------------------

    @on(Button.Pressed, "#use-recommended")
    def _use_recommended_pressed(self) -> None:
        self.action_use_recommended()

    @on(Button.Pressed, "#open-preset")
    def _open_preset_pressed(self) -> None:
        value = self.query_one("#preset-select", Select).value
        if value is not Select.NULL:
            self.open_preset(str(value))

    @on(Button.Pressed, "#open-toml")
    def _open_toml_pressed(self) -> None:
        self.open_file(self.query_one("#toml-path", Input).value)

    @on(Input.Submitted, "#toml-path")
    def _toml_submitted(self, event: Input.Submitted) -> None:
        self.open_file(event.value)

    def action_leave_input(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#use-recommended", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_input":   # Esc does nothing else here: listed only in a text box
            return isinstance(self.focused, Input)
        return True

    def action_focus_file(self) -> None:
        self.query_one("#toml-path", Input).focus()

    def action_use_recommended(self) -> None:
        rec = self.app.recommendation
        if rec is None:
            self.notify("Hardware detection has not finished yet.", severity="warning")
            return
        self.open_preset(rec.preset, rec.settings)

    def open_preset(self, name: str, settings: dict | None = None) -> None:
        from llmtui.engine.config.document import ConfigDocument

        try:
            doc = ConfigDocument.from_preset(name)
            for key, value in (settings or {}).items():
                doc.set(key, value)
            doc.dirty = False   # the machine's tuning of a preset: nothing of the user's to lose
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=8, markup=False)
            return
        self.app.open_wizard(doc)

    def open_file(self, text: str) -> None:
        from llmtui.engine.config.document import ConfigDocument

        error = self.query_one("#toml-error", ErrorText)
        text = text.strip()
        if not text:
            error.show("Type the path of a TOML config file.")
            return
        try:
            doc = ConfigDocument.load(Path(text).expanduser())
        except UserError as exc:
            error.show(str(exc))
            return
        error.show(None)
        self.app.open_wizard(doc)

