"""A loss chart drawn with braille dots: train and val curves, smoothing, log scale.

Points go into `Series`, a fixed-capacity downsampler: when it is full,
neighbouring buckets merge and the bucket width doubles, so memory and drawing
cost stay bounded however long the run is. The widget redraws only when new
points arrive, a toggle changes or it is resized.
"""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# braille dot bits for (x in 0..1, y in 0..3) inside one character cell
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_Y_LABEL = 8  # columns reserved for the y axis labels


class Series:
    """Points (step, value) averaged into at most `capacity` buckets."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
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

    def clear(self) -> None:
        self.__init__(self.capacity)

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


class LossChart(Widget):
    """Train and val loss against steps."""

    COMPONENT_CLASSES = {"loss-chart--train", "loss-chart--val", "loss-chart--axis",
                         "loss-chart--label"}

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    LossChart > .loss-chart--train { color: $accent; }
    LossChart > .loss-chart--val { color: $warning; }
    LossChart > .loss-chart--axis { color: $foreground-muted; }
    LossChart > .loss-chart--label { color: $foreground-muted; }
    """

    smoothing: reactive[bool] = reactive(True)
    log_scale: reactive[bool] = reactive(False)

    def __init__(self, *, capacity: int = 512, smoothing_weight: float = 0.6, **kwargs):
        super().__init__(**kwargs)
        self.train = Series(capacity)
        self.val = Series(capacity)
        self.total_steps: int | None = None
        self.smoothing_weight = smoothing_weight
        self.renders = 0  # for tests and the overhead benchmark

    # -- data ----------------------------------------------------------------

    def add_points(self, train: list[tuple[int, float]] = (), val: list[tuple[int, float]] = ()) -> None:
        """Add new points and redraw once (nothing happens without points)."""
        for step, value in train:
            self.train.add(step, value)
        for step, value in val:
            self.val.add(step, value)
        if train or val:
            self.refresh()

    def set_total_steps(self, total: int | None) -> None:
        if total != self.total_steps:
            self.total_steps = total
            self.refresh()

    def clear(self) -> None:
        self.train.clear()
        self.val.clear()
        self.refresh()

    # -- drawing -------------------------------------------------------------

    def _curve(self, series: Series, smoothed: bool) -> list[tuple[float, float]]:
        pts = series.points()
        if smoothed and len(pts) > 2:
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
        train_style = self.get_component_rich_style("loss-chart--train")
        val_style = self.get_component_rich_style("loss-chart--val")
        plot_w, plot_h = width - _Y_LABEL, height - 1
        if plot_w < 4 or plot_h < 2:
            return Text("")
        train_pts = self._curve(self.train, self.smoothing)
        val_pts = self._curve(self.val, False)
        legend = self._legend(train_style, val_style, label_style)
        if not train_pts and not val_pts:
            lines = [Text(" " * width) for _ in range(plot_h)]
            lines[plot_h // 2] = Text("waiting for the first loss values…".center(width), label_style)
            lines.append(legend)
            return Text("\n").join(lines)

        xs = [x for x, _ in train_pts + val_pts]
        ys = [y for _, y in train_pts + val_pts]
        # the x axis spans the steps seen so far, so the whole curve uses the width
        x_min = min(xs)
        x_max = max(max(xs), x_min + 1.0)
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

        cells_train = [[0] * plot_w for _ in range(plot_h)]
        cells_val = [[0] * plot_w for _ in range(plot_h)]
        self._plot(cells_train, [to_px(x, y) for x, y in _per_column(train_pts, x_min, x_max, px_w)])
        self._plot(cells_val, [to_px(x, y) for x, y in val_pts])

        def ylabel(value: float) -> str:
            shown = 10 ** value if self.log_scale else value
            return nice_label(shown).rjust(_Y_LABEL - 2)[: _Y_LABEL - 2]

        label_rows = {0: ylabel(y_hi), plot_h - 1: ylabel(y_lo)}
        if plot_h >= 5:
            label_rows[(plot_h - 1) // 2] = ylabel((y_hi + y_lo) / 2)
        lines: list[Text] = []
        for row in range(plot_h):
            line = Text()
            line.append(label_rows.get(row, " " * (_Y_LABEL - 2)), label_style)
            line.append(" ┤" if row in label_rows else " │", axis_style)
            t_row, v_row = cells_train[row], cells_val[row]
            run_style: Style | None = None
            run = []
            for col in range(plot_w):
                t, v = t_row[col], v_row[col]
                if v:
                    ch, style = chr(0x2800 + (v | t)), val_style
                elif t:
                    ch, style = chr(0x2800 + t), train_style
                else:
                    ch, style = " ", None
                if style is not run_style and run:
                    line.append("".join(run), run_style)
                    run = []
                run_style = style
                run.append(ch)
            if run:
                line.append("".join(run), run_style)
            lines.append(line)
        lines.append(self._x_axis(x_min, x_max, width, legend, label_style))
        return Text("\n").join(lines)

    @staticmethod
    def _plot(cells: list[list[int]], pts: list[tuple[int, int]]) -> None:
        def dot(px: int, py: int) -> None:
            cells[py // 4][px // 2] |= _DOTS[px % 2][py % 4]

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

    def _legend(self, train_style: Style, val_style: Style, label_style: Style) -> Text:
        legend = Text()
        legend.append("━ train", train_style)
        legend.append("  ", label_style)
        legend.append("━ val", val_style)
        flags = [name for name, on in (("smoothed", self.smoothing), ("log", self.log_scale)) if on]
        if flags:
            legend.append(f"  ({', '.join(flags)})", label_style)
        return legend

    def _x_axis(self, x_min: float, x_max: float, width: int, legend: Text, style: Style) -> Text:
        left = " " * (_Y_LABEL - 1) + f"{int(x_min):,}"
        right = f"step {int(x_max):,}"
        space = width - len(left) - len(right)
        line = Text(left, style)
        if space >= legend.cell_len + 2:
            gap = space - legend.cell_len
            line.append(" " * (gap // 2))
            line.append_text(legend)
            line.append(" " * (gap - gap // 2))
        else:
            line.append(" " * max(1, space))
        line.append(right, style)
        return line

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
