"""Sample text from one checkpoint of a run (opened from the runs view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from llmtui.tui.widgets.sample_box import SampleBox
from llmtui.tui.widgets.title_bar import TitleBar


class SampleScreen(Screen):
    SUB_TITLE = "sample"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, checkpoint: Path, defaults: dict[str, Any]):
        super().__init__()
        self.checkpoint = checkpoint
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with VerticalScroll(id="sum-body"):
            with VerticalScroll(classes="panel") as box:
                box.border_title = f"Sample from {self.checkpoint}"
                yield Static(f"checkpoint {self.checkpoint}", classes="dim", markup=False)
                yield SampleBox(self.checkpoint, self.defaults)
        with Horizontal(id="sum-buttons"):
            yield Button("◂ Back", id="back", compact=True)
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p works; ? lists it

    def on_mount(self) -> None:
        self.query_one("#sample-prompt").focus()

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.app.pop_screen()
