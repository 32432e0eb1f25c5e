"""An Input with a history: up and down walk through the prompts given before."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class PromptInput(Input):
    """`history` is a list shared with its owner (the session's prompts, oldest first); the
    owner appends to it. Up shows the previous prompt, down the next one, and past the
    newest the text that was being typed."""

    BINDINGS = [Binding("up", "history(-1)", "Earlier prompt", show=False),
                Binding("down", "history(1)", "Later prompt", show=False)]

    def __init__(self, value: str = "", *, history: list[str] | None = None, **kwargs):
        super().__init__(value, **kwargs)
        self.history = history if history is not None else []
        self._position: int | None = None   # index into history, None while typing a new one
        self._draft = value

    def action_history(self, direction: int) -> None:
        if not self.history:
            return
        if self._position is None:
            if direction > 0:
                return
            self._draft = self.value
            position = len(self.history) - 1
        else:
            position = self._position + direction
        if position >= len(self.history):
            self._position = None
            self._show(self._draft)
            return
        self._position = max(0, position)
        self._show(self.history[self._position])

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)

    def remember(self, text: str) -> None:
        """Add a submitted prompt to the history (not twice in a row) and start a new one."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._position = None
        self._draft = ""
