"""Charts as inline SVG, drawn on the server with matplotlib (Agg, no pyplot state): readable
without JavaScript, and the same data always gives the same bytes (fixed hash salt, no date,
text kept as text).

Drawing a chart costs tens of milliseconds, most of it matplotlib's per-artist bookkeeping, so:
bars are one collection per series (not one patch per bar), and each chart is kept in a small
per-process cache keyed by everything it draws: a page whose data did not change since the last
request does not draw again, and a changed value is a different key, so a stale chart is never
served."""

from __future__ import annotations

import functools
import io
import re
import threading
from collections import OrderedDict

from markupsafe import Markup

INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
ACCENT = "#2563eb"
SECOND = "#f59e0b"
PALETTE = [ACCENT, SECOND, "#10b981", "#8b5cf6", "#ef4444", "#14b8a6"]
CACHE_SIZE = 128
_lock = threading.Lock()
_cache: OrderedDict = OrderedDict()


def _frozen(value):
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def _cached(draw):
    """Keep the last CACHE_SIZE charts by their arguments (the data drawn); draw under the lock,
    since matplotlib's text and font caches are not thread-safe."""

    @functools.wraps(draw)
    def chart(*args, **kwargs) -> Markup:
        key = (draw.__name__, _frozen(args), _frozen(kwargs))
        with _lock:
            svg = _cache.get(key)
            if svg is None:
                svg = _cache[key] = draw(*args, **kwargs)
                if len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
            else:
                _cache.move_to_end(key)
            return svg

    return chart


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _rects(ax, positions, lengths, *, width: float, starts=None, color: str, horizontal: bool = False,
           label: str | None = None) -> None:
    """Bars as one PolyCollection: what ax.bar draws, without a patch (and its limit update) per bar."""
    from matplotlib.collections import PolyCollection

    starts = starts if starts is not None else [0.0] * len(lengths)
    half = width / 2
    boxes = []
    for p, length, start in zip(positions, lengths, starts):
        lo, hi = start, start + (length or 0)
        corners = ((p - half, lo), (p + half, lo), (p + half, hi), (p - half, hi))
        boxes.append([(y, x) for x, y in corners] if horizontal else list(corners))
    ax.add_collection(PolyCollection(boxes, facecolors=color, edgecolors="none", linewidths=0, label=label),
                      autolim=True)
    ax.autoscale_view()


def _label_margin(labels: list[str], width: float) -> float:
    """The left margin that fits the longest y tick label (about 0.075 in per character at 9 pt)."""
    longest = max((len(label[:28]) for label in labels), default=4)
    return min(0.5, (0.2 + 0.075 * longest) / width)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    ax = fig.add_subplot()
    _style(ax, grid="y")
    _few_ticks(ax)
    return fig, ax


def _style(ax, grid: str) -> None:
    """The console's look: no top and right spines, muted ticks, a light grid behind the data."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=9)
    ax.grid(axis=grid, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _few_ticks(ax) -> None:
    """At most about four ticks on the value axes: each tick costs a text layout, the bulk of a chart's time."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))


def _svg(fig, title: str, *, left: float = 0.1, bottom: float = 0.2, top: float = 0.9) -> Markup:
    import matplotlib

    buffer = io.StringIO()
    # fixed margins, not tight_layout: that draws the figure twice and cost a third of the time
    fig.subplots_adjust(left=left, right=0.98, bottom=bottom, top=top)
    with matplotlib.rc_context({"svg.hashsalt": "pgrecs", "svg.fonttype": "none", "font.family": "sans-serif"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, transparent=True)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    # the RDF block only names the generator; inline, it is noise
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    # an accessible name for the chart, and a width that follows the page
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(title)}" class="chart" ', 1)
    return Markup(svg)


@_cached
def bars(labels: list[str], values: list[float], title: str, *, xlabel: str = "", ylabel: str = "",
         width: float = 6.0, height: float = 2.6, rotate: bool = False) -> Markup:
    fig, ax = _figure(width, height)
    _rects(ax, range(len(values)), values, width=0.8, color=ACCENT)
    _bar_margins(ax, len(values), values)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_xlabel(xlabel, color=MUTED, fontsize=9)
    ax.set_ylabel(ylabel, color=MUTED, fontsize=9)
    return _svg(fig, title, bottom=0.4 if rotate else 0.2)


def _bar_margins(ax, n: int, values, horizontal: bool = False) -> None:
    """The limits ax.bar would set: the bars' slots on one axis, zero to a 5% headroom on the other."""
    top = max([v or 0 for v in values] + [0]) or 1.0
    (ax.set_ylim if horizontal else ax.set_xlim)(-0.5, max(n, 1) - 0.5)
    (ax.set_xlim if horizontal else ax.set_ylim)(0, top * 1.05)


@_cached
def stacked_days(days: list[str], series: dict[str, list[float]], title: str, *, width: float = 6.0,
                 height: float = 2.6) -> Markup:
    fig, ax = _figure(width, height)
    bottom = [0.0] * len(days)
    for colour, (name, values) in zip(PALETTE, series.items()):
        _rects(ax, range(len(days)), values, starts=bottom, width=0.85, color=colour, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    _bar_margins(ax, len(days), bottom)
    step = max(1, len(days) // 8)
    ax.set_xticks(range(0, len(days), step), [days[i][5:] for i in range(0, len(days), step)])
    # a week's width at least, so a day or two of data are bars, not a wall
    ax.set_xlim(-0.5, max(len(days), 7) - 0.5)
    if series:
        ax.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=min(len(series), 6))
    ax.set_ylabel("events", color=MUTED, fontsize=9)
    return _svg(fig, title, bottom=0.14, top=0.85)


@_cached
def intervals(panels: list[tuple[str, list[float | None], list[float | None], list[float | None]]],
              labels: list[str], title: str, *, width: float = 11.0) -> Markup:
    """Per panel (metric, values, lows, highs): a dot per variant with its confidence interval, the
    control (first) in grey; the panels side by side in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 0.7 + 0.45 * max(len(labels), 1)), dpi=96)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (metric, values, lows, highs) in zip(axes, panels):
        _style(ax, grid="x")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
        for i, (v, lo, hi) in enumerate(zip(values, lows, highs)):
            if v is None:
                continue
            colour = MUTED if i == 0 else ACCENT
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [i, i], color=colour, linewidth=2.5, solid_capstyle="round")
            ax.plot([v], [i], "o", color=colour, markersize=7)
        ax.set_title(metric, color=INK, fontsize=10, loc="left")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_ylim(max(len(labels), 1) - 0.5, -0.5)
    fig.subplots_adjust(wspace=0.15)
    return _svg(fig, title, left=_label_margin(labels, width), bottom=0.5 / fig.get_figheight() + 0.05,
                top=1 - 0.35 / fig.get_figheight())


@_cached
def shares(labels: list[str], exposure: list[float], catalog: list[float], title: str, *,
           width: float = 6.0) -> Markup:
    """Share of exposure against share of the catalog, per group (horizontal bars)."""
    fig, ax = _figure(width, 0.6 + 0.32 * max(len(labels), 1))
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ys = range(len(labels))
    _rects(ax, [y - 0.2 for y in ys], [100 * e for e in exposure], width=0.4, color=ACCENT, horizontal=True,
           label="share of exposure")
    _rects(ax, [y + 0.2 for y in ys], [100 * c for c in catalog], width=0.4, color=GRID, horizontal=True,
           label="share of catalog")
    _bar_margins(ax, len(labels), [100 * v for v in list(exposure) + list(catalog)], horizontal=True)
    ax.set_yticks(list(ys), [label[:28] for label in labels])
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel("%", color=MUTED, fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _svg(fig, title, left=_label_margin(labels, width), bottom=0.5 / fig.get_figheight() + 0.05, top=0.97)


@_cached
def lorenz(xs: list[float], ys: list[float], title: str, *, width: float = 6.0, height: float = 2.8) -> Markup:
    """A Lorenz curve against the diagonal of perfect evenness."""
    fig, ax = _figure(width, height)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.plot([0, 100], [0, 100], color=MUTED, linewidth=1, linestyle="--", label="even exposure")
    ax.fill_between([100 * x for x in xs], [100 * y for y in ys], color=ACCENT, alpha=0.15)
    ax.plot([100 * x for x in xs], [100 * y for y in ys], color=ACCENT, linewidth=2, label="served")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("% of active items, least exposed first", color=MUTED, fontsize=9)
    ax.set_ylabel("% of exposure", color=MUTED, fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _svg(fig, title, bottom=0.17)
