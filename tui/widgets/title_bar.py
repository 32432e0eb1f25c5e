"""The one-line title at the top of every screen."""

from __future__ import annotations

from textual import getters
from textual.widgets import Static

from llmtui.tui.app_base import LlmtuiAppBase

# how often a screen shown over a run being trained redraws the run's line (seconds)
TRAINING_LINE_SECONDS = 1.0


class TitleBar(Static):
    """`llmtui · <screen sub-title>`, docked at the top.

    Used instead of Textual's Header, whose title watchers fire for every
    screen and raised NoMatches when a screen was pushed while another was
    still mounting (seen when training started right after launch).

    On a screen shown over the monitor of a run (browsing while it trains), the
    line also says how the run is doing and that ctrl+t (or a click here) goes
    back to it.
    """

    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in

    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
        content-align: center middle;
        text-style: bold;
    }
    TitleBar.-training {
        background: $success-muted;
    }
    """

    def __init__(self, **kwargs):
        super().__init__(markup=False, **kwargs)   # sub-titles hold run names
        self._shown: str | None = None

    def on_mount(self) -> None:
        self._refresh_line()
        monitor = self.app.background_monitor()
        if monitor is not None and self.screen is not monitor:
            self.set_interval(TRAINING_LINE_SECONDS, self._refresh_line)

    def _refresh_line(self) -> None:
        sub_title = self.screen.sub_title or self.app.sub_title
        text = f"{self.app.title} · {sub_title}" if sub_title else self.app.title
        monitor = self.app.background_monitor() if self.screen is self.app.screen else None
        line = monitor.progress_line() if monitor is not None else None
        if line:
            text += f"   ·   {line} (ctrl+t)"
        if text != self._shown:
            self._shown = text
            self.set_class(bool(line), "-training")
            self.update(text)

    def on_click(self) -> None:
        if self.app.background_monitor() is not None:
            self.app.action_show_training()
