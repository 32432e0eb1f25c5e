"""A loss chart drawn with braille dots: train and val curves, a faint reference
curve, other runs' val curves to compare, smoothing and log scale.

Points go into `Series`, a fixed-capacity downsampler: when it is full,
neighbouring buckets merge and the bucket width doubles, so memory and drawing
cost stay bounded however long the run is. The widget redraws only when new
points arrive, a toggle changes or it is resized.

Curves differ in colour (theme colours, see DEFAULT_CSS) and in shape: train is
a line, val points are markers (not joined: a line between evaluations crossed
the train line), the reference is a faint line, and each compared run has its
own marker, so they stay apart in 16-colour terminals too. The legend has a row
of its own above the plot when there is room; the y axis is labelled every few
rows and the x axis at round steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# braille dot bits for (x in 0..1, y in 0..3) inside one character cell
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_Y_LABEL = 8  # columns reserved for the y axis labels
VAL_MARKER = "●"
# compared runs: a colour class and a marker each (cycled)
RUN_MARKERS = "●■▲◆✚✱"
RUN_STYLES = 6


class Series:
    """Points (step, value) averaged into at most `capacity` buckets."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self.clear()

    def clear(self) -> None:
        self.width = 1                                # steps per bucket
        self._buckets: list[list[float]] = []         # [bucket id, sum step, sum value, count]
        self.count = 0
        self.last: tuple[int, float] | None = None

    def add(self, step: int, value: float) -> None:
        if value is None or not math.isfinite(value):
            return
        self.count += 1
        self.last = (step, value)
        bid = step // self.width
        if self._buckets and self._buckets[-1][0] == bid:
            b = self._buckets[-1]
            b[1] += step
            b[2] += value
            b[3] += 1
        else:
            self._buckets.append([bid, float(step), float(value), 1])
        if len(self._buckets) > self.capacity:
            self._merge()

    def _merge(self) -> None:
        self.width *= 2
        merged: list[list[float]] = []
        for bid, s, v, n in self._buckets:
            nid = bid // 2
            if merged and merged[-1][0] == nid:
                m = merged[-1]
                m[1] += s
                m[2] += v
                m[3] += n
            else:
                merged.append([nid, s, v, n])
        self._buckets = merged

    def points(self) -> list[tuple[float, float]]:
        return [(s / n, v / n) for _, s, v, n in self._buckets]

    def __len__(self) -> int:
        return len(self._buckets)


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with start-up bias correction (TensorBoard style)."""
    out, last, debias = [], 0.0, 1.0
    for v in values:
        last = weight * last + (1 - weight) * v
        debias *= weight
        out.append(last / (1 - debias) if debias < 1 else v)
    return out


def nice_label(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 0.01:
        return f"{x:.1e}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


@dataclass
class _Curve:
    label: str
    series: Series
    style_class: str          # component class giving its colour
    marker: str | None        # glyph at each measured point, or None
    smoothed: bool            # follows the smoothing toggle
    rank: int                 # drawing order: higher draws over lower
    joined: bool = True       # a line between the points (else markers only)


class LossChart(Widget):
    """Loss against steps: this run's train and val, a reference, compared runs."""

    COMPONENT_CLASSES = {"loss-chart--train", "loss-chart--val", "loss-chart--reference",
                         "loss-chart--axis", "loss-chart--label",
                         *(f"loss-chart--run-{i}" for i in range(RUN_STYLES))}

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    LossChart > .loss-chart--train { color: $primary; }
    LossChart > .loss-chart--val { color: $success; text-style: bold; }
    LossChart > .loss-chart--reference { color: $foreground 35%; }
    LossChart > .loss-chart--axis { color: $foreground-muted; }
    LossChart > .loss-chart--label { color: $foreground-muted; }
    LossChart > .loss-chart--run-0 { color: $primary; }
    LossChart > .loss-chart--run-1 { color: $success; }
    LossChart > .loss-chart--run-2 { color: $warning; }
    LossChart > .loss-chart--run-3 { color: $error; }
    LossChart > .loss-chart--run-4 { color: $secondary; }
    LossChart > .loss-chart--run-5 { color: $foreground; }
    """

    smoothing: reactive[bool] = reactive(True)
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, *, capacity: int = 512, smoothing_weight: float = 0.6, **kwargs):
        super().__init__(**kwargs)
        self.capacity = capacity
        self.train = Series(capacity)
        self.val = Series(capacity)
        self.reference = Series(capacity)
        self.reference_label = "reference"
        self.runs: list[tuple[str, Series]] = []     # compared runs' curves
        self.runs_smoothed = False                   # they are train curves: smoothing applies
        self.total_steps: int | None = None
        self.current_step: int | None = None         # the step the run is at (the x label)
        self.smoothing_weight = smoothing_weight
        self.renders = 0  # for tests and the overhead benchmark

    # -- data ----------------------------------------------------------------

    def add_points(self, train: Iterable[tuple[int, float]] = (), val: Iterable[tuple[int, float]] = ()) -> None:
        """Add new points and redraw once (nothing happens without points)."""
        for step, value in train:
            self.train.add(step, value)
        for step, value in val:
            self.val.add(step, value)
        if train or val:
            self.refresh()

    def set_reference(self, points: list[tuple[int, float]], label: str = "reference") -> None:
        """A faint curve to compare with (a preset's measured val loss)."""
        self.reference.clear()
        self.reference_label = label
        for step, value in points:
            self.reference.add(step, value)
        self.refresh()

    def set_runs(self, runs: list[tuple[str, list[tuple[int, float]]]], smoothed: bool = False) -> None:
        """Other runs' curves to draw side by side (replaces the previous set); `smoothed`:
        they follow the smoothing toggle (train loss), else they are drawn as measured."""
        self.runs = []
        self.runs_smoothed = smoothed
        for name, points in runs:
            series = Series(self.capacity)
            for step, value in points:
                series.add(step, value)
            self.runs.append((name, series))
        self.refresh()

    def set_total_steps(self, total: int | None) -> None:
        if total != self.total_steps:
            self.total_steps = total
            self.refresh()

    def set_current_step(self, step: int) -> None:
        if step != self.current_step:
            self.current_step = step
            self.refresh()

    def clear(self) -> None:
        self.train.clear()
        self.val.clear()
        self.refresh()

    # -- drawing -------------------------------------------------------------

    def _curves(self) -> list[_Curve]:
        # ranks: the reference under everything; val lines (sparse points, long segments)
        # under the train line; every measured val point (a marker) on top
        curves = [_Curve(self.reference_label, self.reference, "loss-chart--reference", None, False, 0)]
        for i, (name, series) in enumerate(self.runs):
            curves.append(_Curve(name, series, f"loss-chart--run-{i % RUN_STYLES}",
                                 RUN_MARKERS[i % len(RUN_MARKERS)], self.runs_smoothed, 1))
        curves.append(_Curve("train", self.train, "loss-chart--train", None, True, 2))
        curves.append(_Curve("val", self.val, "loss-chart--val", VAL_MARKER, False, 1, joined=False))
        return [c for c in curves if len(c.series)]

    def _points(self, curve: _Curve) -> list[tuple[float, float]]:
        pts = curve.series.points()
        if curve.smoothed and self.smoothing and len(pts) > 2:
            ys = smooth([y for _, y in pts], self.smoothing_weight)
            pts = [(x, y) for (x, _), y in zip(pts, ys)]
        if self.log_scale:
            pts = [(x, math.log10(y)) for x, y in pts if y > 0]
        return pts

    def render(self) -> Text:
        self.renders += 1
        width, height = self.content_size.width, self.content_size.height
        axis_style = self.get_component_rich_style("loss-chart--axis")
        label_style = self.get_component_rich_style("loss-chart--label")
        plot_w, plot_h = width - _Y_LABEL, height - 1
        if plot_w < 4 or plot_h < 2:
            return Text("")
        curves = self._curves()
        drawn = [(c, self._points(c)) for c in curves]
        legend = self._legend(curves, label_style)
        if legend.cell_len > width - _Y_LABEL:
            legend = self._legend(curves, label_style, compact=True)
        # the legend gets a row of its own above the plot when the plot keeps 4 rows
        legend_row = plot_h >= 5 and legend.cell_len <= width - _Y_LABEL
        if legend_row:
            plot_h -= 1
        if not any(pts for c, pts in drawn if c.rank > 0):
            waiting = [Text(" " * width) for _ in range(plot_h)]
            waiting[plot_h // 2] = Text("waiting for the first loss values…".center(width), label_style)
            waiting.append(legend)
            return Text("\n").join(waiting)

        xs = [x for _, pts in drawn for x, _ in pts]
        ys = [y for _, pts in drawn for _, y in pts]
        # the x axis spans the steps this run (and what it is compared with) has so far,
        # the reference included only as far as those go
        shown = [x for c, pts in drawn if c.rank > 0 for x, _ in pts]
        x_min, x_max = min(xs), max(max(shown), min(xs) + 1.0)
        ys = [y for c, pts in drawn for x, y in pts if c.rank > 0 or x <= x_max]
        y_lo, y_hi = min(ys), max(ys)
        if y_hi - y_lo < 1e-9:
            y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
        pad = (y_hi - y_lo) * 0.05
        y_lo, y_hi = y_lo - pad, y_hi + pad
        px_w, px_h = plot_w * 2, plot_h * 4

        def to_px(x: float, y: float) -> tuple[int, int]:
            px = min(px_w - 1, max(0, int(round((x - x_min) / (x_max - x_min) * (px_w - 1)))))
            py = min(px_h - 1, max(0, int(round((y_hi - y) / (y_hi - y_lo) * (px_h - 1)))))
            return px, py

        # each cell shows the highest-ranked curve that touches it
        cell_style: list[list[Style | None]] = [[None] * plot_w for _ in range(plot_h)]
        cell_rank = [[-1] * plot_w for _ in range(plot_h)]
        cell_dots = [[0] * plot_w for _ in range(plot_h)]
        cell_glyph: list[list[str | None]] = [[None] * plot_w for _ in range(plot_h)]
        for curve, pts in sorted(drawn, key=lambda item: item[0].rank):
            style = self.get_component_rich_style(curve.style_class)
            pts = [(x, y) for x, y in pts if x <= x_max]
            if curve.joined:
                dense = curve.marker is None or curve.smoothed    # a train curve: a point a step
                joined = _per_column(pts, x_min, x_max, px_w) if dense else pts
                dots: dict[tuple[int, int], int] = {}
                self._plot(dots, [to_px(x, y) for x, y in joined])
                for (row, col), bits in dots.items():   # only the cells the curve touches
                    if curve.rank >= cell_rank[row][col]:
                        cell_rank[row][col], cell_style[row][col] = curve.rank, style
                        cell_glyph[row][col] = None
                    cell_dots[row][col] |= bits
            if curve.marker:
                # a compared train curve is marked at its end only (a marker a step would hide it)
                for x, y in (pts[-1:] if curve.smoothed else pts):
                    px, py = to_px(x, y)
                    row, col = py // 4, px // 2
                    cell_rank[row][col], cell_style[row][col] = curve.rank + 10, style
                    cell_glyph[row][col] = curve.marker

        def ylabel(value: float) -> str:
            shown_value = 10 ** value if self.log_scale else value
            return nice_label(shown_value).rjust(_Y_LABEL - 2)[: _Y_LABEL - 2]

        label_rows = {row: ylabel(y_hi - (y_hi - y_lo) * row / (plot_h - 1)) for row in _label_rows(plot_h)}
        lines: list[Text] = []
        if legend_row:
            lines.append(Text(" " * (width - legend.cell_len)) + legend)
        for row in range(plot_h):
            line = Text()
            line.append(label_rows.get(row, " " * (_Y_LABEL - 2)), label_style)
            line.append(" ┤" if row in label_rows else " │", axis_style)
            run_style: Style | None = None
            run: list[str] = []
            for col in range(plot_w):
                glyph = cell_glyph[row][col]
                if glyph is not None:
                    ch = glyph
                elif cell_dots[row][col]:
                    ch = chr(0x2800 + cell_dots[row][col])
                else:
                    ch = " "
                ch_style = cell_style[row][col] if ch != " " else None
                if ch_style is not run_style and run:
                    line.append("".join(run), run_style)
                    run = []
                run_style = ch_style
                run.append(ch)
            if run:
                line.append("".join(run), run_style)
            lines.append(line)
        lines.append(self._x_axis(x_min, x_max, width, None if legend_row else legend, label_style))
        return Text("\n").join(lines)

    @staticmethod
    def _plot(cells: dict[tuple[int, int], int], pts: list[tuple[int, int]]) -> None:
        """Draw straight segments between the points into braille cells {(row, col): bits}."""
        def dot(px: int, py: int) -> None:
            key = (py // 4, px // 2)
            cells[key] = cells.get(key, 0) | _DOTS[px % 2][py % 4]

        if len(pts) == 1:
            dot(*pts[0])
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            dx, dy = abs(x1 - x0), -abs(y1 - y0)
            sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
            err = dx + dy
            while True:
                dot(x0, y0)
                if x0 == x1 and y0 == y1:
                    break
                e2 = 2 * err
                if e2 >= dy:
                    err += dy
                    x0 += sx
                if e2 <= dx:
                    err += dx
                    y0 += sy

    def _legend(self, curves: list[_Curve], label_style: Style, compact: bool = False) -> Text:
        legend = Text()
        order = {"train": 0, "val": 1}
        for curve in sorted(curves, key=lambda c: (order.get(c.label, 2), -c.rank)):
            if legend:
                legend.append(" " if compact else "  ", label_style)
            glyph = curve.marker or ("┄" if curve.rank == 0 else "━")
            if not compact:
                glyph = f"━{curve.marker}" if curve.marker else glyph * 2
            label = curve.label.split(" ")[0] if compact else curve.label
            legend.append(f"{glyph}{'' if compact else ' '}{label}",
                          self.get_component_rich_style(curve.style_class))
        flags = [name for name, on in (("smoothed", self.smoothing), ("log", self.log_scale)) if on]
        if flags and not compact:
            legend.append(f"  ({', '.join(flags)})", label_style)
        return legend

    def _x_axis(self, x_min: float, x_max: float, width: int, legend: Text | None, style: Style) -> Text:
        """Step labels under the plot: its first step, round steps between (where they fit),
        and the step the run is at; the legend too when it has no row of its own."""
        left = " " * (_Y_LABEL - 1) + f"{int(x_min):,}"
        at = max(int(x_max), self.current_step or 0)
        right = f"step {at:,}"
        space = width - len(left) - len(right)
        if legend is not None:
            line = Text(left, style)
            if space < legend.cell_len + 2:   # a narrow chart: the short legend
                legend = self._legend(self._curves(), style, compact=True)
            if space >= legend.cell_len + 2:
                gap = space - legend.cell_len
                line.append(" " * (gap // 2))
                line.append_text(legend)
                line.append(" " * (gap - gap // 2))
            else:
                line.append(" " * max(1, space))
            line.append(right, style)
            return line
        chars = list(left.ljust(width - len(right)) + right)
        plot_w = width - _Y_LABEL
        taken = [(0, len(left) + 1), (width - len(right) - 2, width)]   # a gap of 2 around each label
        for step in _round_steps(x_min, x_max, max(1, plot_w // 12)):
            label = f"{step:,}"
            # the cell the step's dots are drawn in (two dot columns a cell, as to_px)
            col = _Y_LABEL + int(round((step - x_min) / (x_max - x_min) * (2 * plot_w - 1))) // 2
            start = col - len(label) // 2
            end = start + len(label)
            if all(end + 2 <= a or start >= b + 2 for a, b in taken):
                chars[start:end] = label
                taken.append((start, end))
        return Text("".join(chars), style)

    def watch_smoothing(self) -> None:
        self.refresh()

    def watch_log_scale(self) -> None:
        self.refresh()


def _per_column(pts: list[tuple[float, float]], x_min: float, x_max: float,
                px_w: int) -> list[tuple[float, float]]:
    """Average the points that land in the same pixel column (bounded by the width)."""
    if len(pts) <= px_w:
        return pts
    out: list[tuple[float, float]] = []
    col_of = lambda x: int((x - x_min) / (x_max - x_min) * (px_w - 1))  # noqa: E731
    cur, sx, sy, n = None, 0.0, 0.0, 0
    for x, y in pts:
        c = col_of(x)
        if c != cur and n:
            out.append((sx / n, sy / n))
            sx = sy = 0.0
            n = 0
        cur = c
        sx += x
        sy += y
        n += 1
    if n:
        out.append((sx / n, sy / n))
    return out


def _label_rows(plot_h: int) -> list[int]:
    """The plot rows that get a y label: the top, the bottom, and every 3 to 4 rows between."""
    if plot_h < 3:
        return list(range(plot_h))
    count = max(3, min(plot_h, round((plot_h - 1) / 3.5) + 1))
    return sorted({round(i * (plot_h - 1) / (count - 1)) for i in range(count)})


def _round_steps(x_min: float, x_max: float, wanted: int) -> list[int]:
    """About `wanted` round steps (1, 2 or 5 times a power of ten apart) strictly
    between x_min and x_max."""
    span = x_max - x_min
    if span <= 0 or wanted < 1:
        return []
    raw = span / (wanted + 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    step = max(1, int(step))
    first = (int(x_min) // step + 1) * step
    return [x for x in range(first, int(x_max), step) if x_min < x < x_max]


if TYPE_CHECKING:     # the mixin is used on screens: query_one is theirs
    _Keyed = Widget
else:
    _Keyed = object


class LossChartKeys(_Keyed):
    """The actions of the keys every screen with one LossChart binds (l, m): the log scale
    and the smoothing of its chart. A mixin of the screen; the bindings stay in each
    screen's BINDINGS, in its own footer order."""

    def action_toggle_log(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_scale = not chart.log_scale

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = not chart.smoothing

