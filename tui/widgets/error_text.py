"""A one-line (or wrapped) error message that takes no room while empty."""

from __future__ import annotations

from textual.widgets import Static


class ErrorText(Static):
    DEFAULT_CSS = "ErrorText { height: auto; color: $text-error; display: none; }"

    def __init__(self, text: str = "", **kwargs):
        super().__init__(text, markup=False, **kwargs)
        self.text = text
        self.display = bool(text)

    def show(self, text: str | None) -> None:
        text = text or ""
        if text != self.text:
            self.text = text
            self.update(text)
            self.display = bool(text)
