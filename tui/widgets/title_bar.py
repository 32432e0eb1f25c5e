"""The one-line title at the top of every screen."""

from __future__ import annotations

from textual.widgets import Static


class TitleBar(Static):
    """`llmtui · <screen sub-title>`, docked at the top.

    Used instead of Textual's Header, whose title watchers fire for every
    screen and raised NoMatches when a screen was pushed while another was
    still mounting (seen when training started right after launch).
    """

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
    """

    def __init__(self, **kwargs):
        super().__init__(markup=False, **kwargs)   # sub-titles hold run names

    def on_mount(self) -> None:
        sub_title = self.screen.sub_title or self.app.sub_title
        self.update(f"{self.app.title} · {sub_title}" if sub_title else self.app.title)
