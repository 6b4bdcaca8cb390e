"""Charts as inline SVG, drawn on the server: shapes laid out here, written by one Jinja template
(templates/console/chart.svg). Readable without JavaScript, text kept as text (each bar, dot and
interval also carries its value as a hover title), and the same data always gives the same bytes.

The charts are bars, stacked bars, dots with intervals and a curve: a few dozen shapes each. Laid
out directly they take about a millisecond; drawn through matplotlib's figure machinery they took
75-400 ms each on the demo data, most of a page's time. The round axis ticks are still
matplotlib's (`MaxNLocator`), imported once with this module at app start."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from matplotlib.ticker import MaxNLocator

INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
ACCENT = "#2563eb"
SECOND = "#f59e0b"
CATALOG = "#cbd5e1"
PALETTE = [ACCENT, SECOND, "#10b981", "#8b5cf6", "#ef4444", "#14b8a6"]
DPI = 96  # sizes are given in inches, as the page layout was designed; the SVG is in pixels
CHAR_PX = 6.2  # mean advance of an 11 px sans-serif character: enough to reserve room for a label
FONT = 11
_template = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                        trim_blocks=True, lstrip_blocks=True).get_template("console/chart.svg")


def _r(value: float) -> float:
    return round(value, 1)


def _number(value: float, step: float) -> str:
    """A tick label with as many decimals as the tick step needs."""
    fraction = f"{step:.6g}".partition(".")[2]
    return f"{value:,.{len(fraction)}f}"


def _value(value: float | None) -> str:
    return "–" if value is None else f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


class _Scale:
    """Data values to pixels along one axis, over round limits with about `bins` matplotlib ticks."""

    def __init__(self, low: float, high: float, start: float, end: float, bins: int = 4, exact: bool = False):
        if not high > low:
            low, high = (low - 1, high + 1) if low else (0.0, 1.0)
        if exact:
            self.ticks = [t for t in MaxNLocator(nbins=bins).tick_values(low, high) if low - 1e-9 <= t <= high + 1e-9]
        else:
            self.ticks = list(MaxNLocator(nbins=bins).tick_values(low, high))
            low, high = min(low, self.ticks[0]), max(high, self.ticks[-1])
        self.low, self.high, self.start, self.end = low, high, start, end
        self.step = self.ticks[1] - self.ticks[0] if len(self.ticks) > 1 else 1.0

    def __call__(self, value: float) -> float:
        return _r(self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start))


class _Chart:
    """A list of shapes in drawing order (later ones on top), written by the template."""

    def __init__(self, width_in: float, height_in: float, title: str):
        self.width, self.height, self.title = round(width_in * DPI), round(height_in * DPI), title
        self.shapes: list[dict] = []

    def rect(self, x, y, w, h, color, tip=None):
        self.shapes.append({"kind": "rect", "x": _r(x), "y": _r(y), "w": _r(max(w, 0)), "h": _r(max(h, 0)),
                            "color": color, "tip": tip})

    def line(self, x1, y1, x2, y2, color, width=1.0, dash=None, round_caps=False, tip=None):
        self.shapes.append({"kind": "line", "x1": _r(x1), "y1": _r(y1), "x2": _r(x2), "y2": _r(y2), "color": color,
                            "width": width, "dash": dash, "round": round_caps, "tip": tip})

    def path(self, points, color=None, width=2.0, fill=None, opacity=None):
        self.shapes.append({"kind": "path", "points": " ".join(f"{_r(x)},{_r(y)}" for x, y in points),
                            "color": color, "width": width, "fill": fill, "opacity": opacity})

    def dot(self, x, y, r, color, tip=None):
        self.shapes.append({"kind": "dot", "x": _r(x), "y": _r(y), "r": r, "color": color, "tip": tip})

    def text(self, x, y, text, anchor="middle", color=MUTED, size=FONT, rotate=None):
        self.shapes.append({"kind": "text", "x": _r(x), "y": _r(y), "text": text, "anchor": anchor, "color": color,
                            "size": size, "rotate": rotate})

    def value_grid(self, scale: _Scale, left: float, right: float, label_x: float) -> None:
        """Horizontal grid lines at the ticks of a vertical value axis, labelled on the left."""
        for tick in scale.ticks:
            y = scale(tick)
            self.line(left, y, right, y, GRID)
            self.text(label_x, y + 4, _number(tick, scale.step), anchor="end")

    def legend(self, entries: list[tuple[str, str]], x: float, y: float) -> None:
        """Colour swatches and names in one row from (x, y), the swatches' top."""
        for name, colour in entries:
            self.rect(x, y, 10, 10, colour)
            self.text(x + 14, y + 9, name, anchor="start", size=10)
            x += 14 + len(name) * CHAR_PX * 10 / FONT + 14

    def svg(self) -> Markup:
        return Markup(_template.render(width=self.width, height=self.height, title=self.title, shapes=self.shapes))


def _left_margin(labels, low: float = 40) -> float:
    return max(low, 12 + CHAR_PX * max((len(label) for label in labels), default=0))


def _axis_titles(chart: _Chart, xlabel: str, ylabel: str, left: float, right: float, top: float, bottom: float):
    if xlabel:
        chart.text((left + right) / 2, chart.height - 6, xlabel)
    if ylabel:
        chart.text(12, (top + bottom) / 2, ylabel, rotate=-90)


def _column_labels(chart: _Chart, labels: list[str], centre, y: float, rotate: bool, every: int = 1) -> None:
    for i in range(0, len(labels), every):
        if rotate:
            chart.text(centre(i) + 4, y, labels[i], anchor="end", rotate=-45)
        else:
            chart.text(centre(i), y + 4, labels[i])


def bars(labels: list[str], values: list[float], title: str, *, xlabel: str = "", ylabel: str = "",
         width: float = 6.0, height: float = 2.6, rotate: bool = False) -> Markup:
    """One bar per label, from zero."""
    chart = _Chart(width, height, title)
    values = [v or 0 for v in values]
    longest = max((len(label) for label in labels), default=0)
    left, right, top = (54 if ylabel else 40), chart.width - 10, 10
    bottom = chart.height - ((14 + 0.72 * CHAR_PX * longest) if rotate else 22) - (18 if xlabel else 0)
    scale = _Scale(0, max(values, default=0), bottom, top)
    chart.value_grid(scale, left, right, left - 6)
    slot = (right - left) / max(len(values), 1)
    for i, (label, value) in enumerate(zip(labels, values)):
        chart.rect(left + slot * (i + 0.1), scale(value), slot * 0.8, bottom - scale(value), ACCENT,
                   tip=f"{label}: {_value(value)}")
    chart.line(left, bottom, right, bottom, GRID)
    _column_labels(chart, labels, lambda i: left + slot * (i + 0.5), bottom + 12, rotate)
    _axis_titles(chart, xlabel, ylabel, left, right, top, bottom)
    return chart.svg()


def stacked_days(days: list[str], series: dict[str, list[float]], title: str, *, width: float = 6.0,
                 height: float = 2.6) -> Markup:
    """Per day, one bar stacked by series (event types), with a legend above."""
    chart = _Chart(width, height, title)
    left, right, top, bottom = 54, chart.width - 10, 28, chart.height - 22
    totals = [sum((values[i] or 0) for values in series.values()) for i in range(len(days))]
    scale = _Scale(0, max(totals, default=0), bottom, top)
    chart.value_grid(scale, left, right, left - 6)
    # a week's width at least, so a day or two of data are bars, not a wall
    slot = (right - left) / max(len(days), 7)
    base = [0.0] * len(days)
    for colour, (name, values) in zip(PALETTE, series.items()):
        for i, value in enumerate(values):
            value = value or 0
            if value:
                chart.rect(left + slot * (i + 0.075), scale(base[i] + value), slot * 0.85,
                           scale(base[i]) - scale(base[i] + value), colour, tip=f"{days[i]} {name}: {_value(value)}")
            base[i] += value
    chart.line(left, bottom, right, bottom, GRID)
    _column_labels(chart, [day[5:] for day in days], lambda i: left + slot * (i + 0.5), bottom + 12, False,
                   every=max(1, len(days) // 8))
    chart.legend(list(zip(series, PALETTE)), left, 4)
    _axis_titles(chart, "", "events", left, right, top, bottom)
    return chart.svg()


def intervals(panels: list[tuple[str, list[float | None], list[float | None], list[float | None]]],
              labels: list[str], title: str, *, width: float = 11.0) -> Markup:
    """Per panel (metric, values, lows, highs): a dot per variant with its confidence interval, the
    control (first) in grey; the panels side by side, sharing the variants' rows."""
    rows = max(len(labels), 1)
    chart = _Chart(width, 0.7 + 0.45 * rows, title)
    left, right, top, bottom = _left_margin(labels), chart.width - 10, 26, chart.height - 22
    row = (bottom - top) / rows
    gap = 30
    panel_width = (right - left - gap * (len(panels) - 1)) / max(len(panels), 1)
    for i, label in enumerate(labels):
        chart.text(left - 8, top + row * (i + 0.5) + 4, label, anchor="end", color=INK)
    for p, (metric, values, lows, highs) in enumerate(panels):
        x0 = left + p * (panel_width + gap)
        known = [v for v in list(values) + list(lows) + list(highs) if v is not None]
        scale = _Scale(min(known, default=0), max(known, default=1), x0, x0 + panel_width)
        chart.text(x0, 14, metric, anchor="start", color=INK, size=12)
        for tick in scale.ticks:
            chart.line(scale(tick), top, scale(tick), bottom, GRID)
            chart.text(scale(tick), bottom + 14, _number(tick, scale.step))
        for i, (value, low, high) in enumerate(zip(values, lows, highs)):
            if value is None:
                continue
            y, colour = top + row * (i + 0.5), MUTED if i == 0 else ACCENT
            if low is not None and high is not None:
                chart.line(scale(low), y, scale(high), y, colour, width=2.5, round_caps=True,
                           tip=f"{labels[i]} {metric}: 95% interval {_value(low)} to {_value(high)}")
            chart.dot(scale(value), y, 3.5, colour, tip=f"{labels[i]} {metric}: {_value(value)}")
    return chart.svg()


def shares(labels: list[str], exposure: list[float], catalog: list[float], title: str, *,
           width: float = 6.0) -> Markup:
    """Share of exposure against share of the catalog, per group (horizontal bars)."""
    labels = [label[:28] for label in labels]
    rows = max(len(labels), 1)
    chart = _Chart(width, 0.6 + 0.32 * rows, title)
    left, right, top, bottom = _left_margin(labels), chart.width - 10, 24, chart.height - 30
    row = (bottom - top) / rows
    scale = _Scale(0, 100 * max(list(exposure) + list(catalog), default=0), left, right)
    for tick in scale.ticks:
        chart.line(scale(tick), top, scale(tick), bottom, GRID)
        chart.text(scale(tick), bottom + 14, _number(tick, scale.step))
    for i, (label, shown, held) in enumerate(zip(labels, exposure, catalog)):
        y = top + row * i
        chart.text(left - 8, y + row / 2 + 4, label, anchor="end", color=INK)
        chart.rect(left, y + row * 0.1, scale(100 * shown) - left, row * 0.4, ACCENT,
                   tip=f"{label}: {100 * shown:.1f}% of exposure")
        chart.rect(left, y + row * 0.5, scale(100 * held) - left, row * 0.4, CATALOG,
                   tip=f"{label}: {100 * held:.1f}% of the catalog")
    chart.line(left, top, left, bottom, GRID)
    chart.legend([("share of exposure", ACCENT), ("share of catalog", CATALOG)], left, 4)
    chart.text((left + right) / 2, chart.height - 4, "%")
    return chart.svg()


def lorenz(xs: list[float], ys: list[float], title: str, *, width: float = 6.0, height: float = 2.8) -> Markup:
    """A Lorenz curve against the diagonal of perfect evenness."""
    chart = _Chart(width, height, title)
    left, right, top, bottom = 54, chart.width - 10, 28, chart.height - 38
    sx, sy = _Scale(0, 100, left, right, exact=True), _Scale(0, 100, bottom, top, exact=True)
    for tick in sx.ticks:
        chart.line(sx(tick), top, sx(tick), bottom, GRID)
        chart.text(sx(tick), bottom + 14, _number(tick, sx.step))
    chart.value_grid(sy, left, right, left - 6)
    curve = [(sx(100 * x), sy(100 * y)) for x, y in zip(xs, ys)]
    if curve:
        chart.path(curve + [(curve[-1][0], bottom), (curve[0][0], bottom)], fill=ACCENT, opacity=0.15, width=0)
    chart.line(sx(0), sy(0), sx(100), sy(100), MUTED, dash="4 3")
    chart.path(curve, color=ACCENT, width=2)
    chart.legend([("served", ACCENT), ("even exposure", MUTED)], left, 4)
    _axis_titles(chart, "% of active items, least exposed first", "% of exposure", left, right, top, bottom)
    return chart.svg()
