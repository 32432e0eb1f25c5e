"""A TOML config, highlighted, its long comments wrapped under themselves.

Rich's Syntax wraps a long line at the left edge, so a comment after a value
(`max_steps = 1300 # Optimizer steps to train ...`) continued flush left,
among the keys. Here a comment that does not fit goes on in lines of its own,
each starting with `#` under the first one's `#` (still valid TOML); the text
is wrapped again when the width changes.
"""

from __future__ import annotations

import textwrap

from rich.syntax import Syntax
from textual import events
from textual.widgets import Static

MIN_COMMENT = 20   # columns a wrapped comment keeps at least; else it hangs further left


def comment_start(line: str) -> int | None:
    """Where the line's comment starts (a `#` outside a string), or None."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1             # an escape: skip the next character
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return None


def wrap_toml(text: str, width: int) -> str:
    """`text` with every comment longer than `width` wrapped with a hanging `#`."""
    out: list[str] = []
    for line in text.splitlines():
        start = comment_start(line) if len(line) > width else None
        if start is None:
            out.append(line)
            continue
        code = line[:start].rstrip()
        indent = len(code) + 1 if code else start
        if width - indent - 2 < MIN_COMMENT:
            indent = min(4, indent)
        body = line[start:].lstrip("#").strip()
        first_width = max(MIN_COMMENT, width - (len(code) + 1 if code else start) - 2)
        first, *rest = textwrap.wrap(body, first_width, break_on_hyphens=False) or [""]
        out.append(f"{code} # {first}" if code else f"{' ' * start}# {first}")
        rest_text = " ".join(rest)
        for piece in textwrap.wrap(rest_text, max(MIN_COMMENT, width - indent - 2), break_on_hyphens=False):
            out.append(f"{' ' * indent}# {piece}")
    return "\n".join(out)


class ConfigView(Static):
    """A config.toml shown read-only; `show(text)`."""

    def __init__(self, **kwargs):
        super().__init__("", **kwargs)
        self.text = ""
        self._width = 0

    def show(self, text: str) -> None:
        self.text = text
        self._width = 0
        self._render_text()

    def on_resize(self, event: events.Resize) -> None:
        self._render_text()

    def _render_text(self) -> None:
        width = self.content_size.width
        if not self.text:
            self.update("no config.toml in this run")
            return
        if width <= 0 or width == self._width:
            return
        self._width = width
        self.update(Syntax(wrap_toml(self.text, width), "toml", word_wrap=True, theme="ansi_dark"))
