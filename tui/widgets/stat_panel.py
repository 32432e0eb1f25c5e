"""A titled block of `label  value` rows that repaints only when a value changes.

A row's style class may add "wrap" ("bad wrap"): its value is a sentence that
wraps instead of being cut, under itself past the label (a hanging indent), or
across the whole width when the row has no label."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

Row = tuple[str, str] | tuple[str, str, str]  # label, value[, style class: warn/bad/good/dim[ wrap]]


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
        # same number of rows, none wrapping: same size, so skip the (costly) layout pass
        same_size = (self._rows is not None and len(rows) == len(self._rows)
                     and not any(_wraps(r) for r in rows + list(self._rows)))
        self._rows = list(rows)
        self.updates += 1
        self.update(self._build(), layout=not same_size)
        return True

    def _build(self) -> Text | Group:
        label_style = self.get_component_rich_style("stat-panel--label", partial=True)
        heading_style = self.get_component_rich_style("stat-panel--heading", partial=True)
        parts: list[Text | Table] = []
        out = Text(no_wrap=True, overflow="ellipsis")
        for row in self._rows or []:
            label, value = row[0], row[1]
            classes = (row[2] if len(row) > 2 else "").split()
            cls = next((c for c in classes if c != "wrap"), "")
            style = self.get_component_rich_style(f"stat-panel--{cls}", partial=True) if cls else ""
            if "wrap" in classes:
                if out:
                    parts.append(out)
                    out = Text(no_wrap=True, overflow="ellipsis")
                if not label:    # a message of its own: the whole width
                    parts.append(Text(value, style))
                    continue
                grid = Table.grid(expand=True)
                grid.add_column(width=self.label_width, no_wrap=True)
                grid.add_column(ratio=1)
                grid.add_row(Text(label[: self.label_width - 1], label_style), Text(value, style))
                parts.append(grid)
                continue
            if out:
                out.append("\n")
            if cls == "heading":
                out.append(label, heading_style)
                continue
            out.append(label[: self.label_width - 1].ljust(self.label_width), label_style)
            out.append(value, style)
        if not parts:
            return out
        if out:
            parts.append(out)
        return Group(*parts)


def _wraps(row: Row) -> bool:
    return len(row) > 2 and "wrap" in row[2].split()
