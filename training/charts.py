"""Small server-rendered SVG line charts for the run page; no JavaScript chart library.

Only numbers from our own metrics reach the markup, formatted by us, so nothing here can
inject HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

WIDTH, HEIGHT, PAD = 360, 160, 32
COLOURS = {"train": "#2f5fd0", "eval": "#d9822b"}


def _format(value: float) -> str:
    return f"{value:.3g}"


def line_chart(title: str, series: Mapping[str, Sequence[tuple[int, float]]]) -> str:
    points = [(x, y) for values in series.values() for x, y in values]
    if not points:
        empty = '<p class="empty">No data yet.</p>'
        return f'<figure class="chart"><figcaption>{title}</figcaption>{empty}</figure>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(ys), max(ys)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5, y_high + 0.5

    def scale(x: float, y: float) -> tuple[float, float]:
        sx = PAD + (x - x_low) / (x_high - x_low) * (WIDTH - 2 * PAD)
        sy = HEIGHT - PAD - (y - y_low) / (y_high - y_low) * (HEIGHT - 2 * PAD)
        return round(sx, 1), round(sy, 1)

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"'
        ' class="axis"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{_format(y_high)}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">{_format(y_low)}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 14}" text-anchor="end">step {x_high}</text>',
    ]
    for name, values in series.items():
        if not values:
            continue
        coords = " ".join(f"{sx},{sy}" for sx, sy in (scale(x, y) for x, y in values))
        colour = COLOURS.get(name, "#555")
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for sx, sy in (scale(x, y) for x, y in values[-1:]):
            parts.append(f'<circle cx="{sx}" cy="{sy}" r="3" fill="{colour}"/>')
    parts.append("</svg>")
    legend = " ".join(
        f'<span style="color:{COLOURS.get(name, "#555")}">■ {name}</span>'
        for name, values in series.items()
        if values
    )
    return (
        f'<figure class="chart"><figcaption>{title} {legend}</figcaption>{"".join(parts)}</figure>'
    )
