"""A titled block of `label  value` rows that repaints only when a value changes."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

Row = tuple[str, str] | tuple[str, str, str]  # label, value[, style class: warn/bad/good/dim]


class StatPanel(Static):
    DEFAULT_CSS = """
    StatPanel { height: auto; padding: 0 1; }
    """

    COMPONENT_CLASSES = {"stat-panel--label", "stat-panel--warn", "stat-panel--bad",
                         "stat-panel--good", "stat-panel--heading", "stat-panel--dim"}

    def __init__(self, title: str = "", *, label_width: int = 12, **kwargs):
        super().__init__("", **kwargs)
        self.title = title
        self.label_width = label_width
        self._rows: list[Row] | None = None
        self.updates = 0
        if title:
            self.border_title = title

    def set_rows(self, rows: list[Row]) -> bool:
        """Show these rows; returns False (and does nothing) if nothing changed."""
        if rows == self._rows:
            return False
        # same number of rows: same size, so skip the (costly) layout pass
        same_size = self._rows is not None and len(rows) == len(self._rows)
        self._rows = list(rows)
        self.updates += 1
        self.update(self._build(), layout=not same_size)
        return True

    def _build(self) -> Text:
        label_style = self.get_component_rich_style("stat-panel--label", partial=True)
        heading_style = self.get_component_rich_style("stat-panel--heading", partial=True)
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, row in enumerate(self._rows or []):
            if i:
                out.append("\n")
            label, value = row[0], row[1]
            cls = row[2] if len(row) > 2 else ""
            if cls == "heading":
                out.append(label, heading_style)
                continue
            out.append(label[: self.label_width - 1].ljust(self.label_width), label_style)
            style = self.get_component_rich_style(f"stat-panel--{cls}", partial=True) if cls else ""
            out.append(value, style)
        return out
