"""Charts as inline SVG, drawn on the server: no JavaScript, no external assets."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from .summary import Bucket

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 40
OPENS, CLICKS = "#3867d6", "#e1812c"


def _nice(n: int) -> int:
    """The smallest 1, 2 or 5 × 10^k at or above n (at least 1): a round top for the axis."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= n:
                return step * m
        step *= 10


def opens_and_clicks(buckets: Sequence[Bucket]) -> Markup:
    """A bar chart of total opens and clicks per bucket, with a hover title on every bar."""
    n = max(1, len(buckets))
    top = _nice(max([b.opens for b in buckets] + [b.clicks for b in buckets] + [1]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar = max(1.0, slot * 0.4)
    y = lambda v: TOP + plot_h - plot_h * v / top  # noqa: E731
    out = [
        f'<svg id="chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="100%" role="img" aria-label="Opens and clicks per {"hour" if n and _hourly(buckets) else "day"}">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#888"/>',
    ]
    for frac in (0, 0.5, 1):
        v = top * frac
        out.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}" stroke="#e3e6ec"/>'
                   f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    label_every = max(1, round(n / 8))
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + (slot - 2 * bar) / 2
        for j, (value, colour, what) in enumerate(((b.opens, OPENS, "opens"), (b.clicks, CLICKS, "clicks"))):
            h = plot_h * value / top
            out.append(
                f'<rect class="{what}" x="{x + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}"'
                f' height="{h:.1f}" fill="{colour}" data-value="{value}"><title>{escape(b.label)}: {value} {what}'
                "</title></rect>")
        if i % label_every == 0:
            out.append(f'<text x="{LEFT + (i + 0.5) * slot:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11"'
                       f' text-anchor="middle">{escape(b.label)}</text>')
    out.append(
        f'<rect x="{LEFT}" y="{HEIGHT - 14}" width="10" height="10" fill="{OPENS}"/>'
        f'<text x="{LEFT + 14}" y="{HEIGHT - 5}" font-size="11">opens</text>'
        f'<rect x="{LEFT + 70}" y="{HEIGHT - 14}" width="10" height="10" fill="{CLICKS}"/>'
        f'<text x="{LEFT + 84}" y="{HEIGHT - 5}" font-size="11">clicks</text></svg>')
    return Markup("".join(out))


def _hourly(buckets: Sequence[Bucket]) -> bool:
    return len(buckets) > 1 and (buckets[1].start - buckets[0].start).total_seconds() <= 3600
