"""Metric charts as self-contained SVG/HTML: no JavaScript, no network, opens from a file or an email.

Long histories are reduced to at most ``max_points`` per line by keeping each bucket's minimum and
maximum, so spikes (a diverging loss) survive down-sampling. NaN points break the line; +/-inf
points are drawn as markers on the top/bottom edge instead of flattening the scale.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from loopml.tracking.models import MetricPoint, Run

WIDTH, HEIGHT = 640, 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 16, 28, 36
DEFAULT_MAX_POINTS = 1500


def downsample(points: Sequence[MetricPoint], max_points: int = DEFAULT_MAX_POINTS) -> list[MetricPoint]:
    """Keep the min and max of each bucket (in step order) so the line's envelope is unchanged."""
    if len(points) <= max_points:
        return list(points)
    buckets = max(1, max_points // 2)
    size = math.ceil(len(points) / buckets)
    out: list[MetricPoint] = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        finite = [p for p in chunk if math.isfinite(p.value)]
        if not finite:
            out.append(chunk[0])
            continue
        lo = min(finite, key=lambda p: p.value)
        hi = max(finite, key=lambda p: p.value)
        out.extend(sorted({id(lo): lo, id(hi): hi}.values(), key=lambda p: p.step))
    return out


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def render_svg(key: str, points: Sequence[MetricPoint], *, max_points: int = DEFAULT_MAX_POINTS) -> str:
    """One metric's history as an SVG line chart (step on x, value on y)."""
    pts = downsample(points, max_points)
    finite = [p for p in pts if math.isfinite(p.value)]
    title = html.escape(key)
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
    parts = [head, f'<text x="{PAD_LEFT}" y="16" font-size="13" font-weight="bold">{title}</text>']
    if not finite:
        parts.append(
            f'<text x="{PAD_LEFT}" y="{HEIGHT // 2}">no finite values ({len(points)} points)</text></svg>'
        )
        return "".join(parts)
    x0, x1 = pts[0].step, pts[-1].step
    y0, y1 = min(p.value for p in finite), max(p.value for p in finite)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) or 1) * 0.05, y1 + (abs(y1) or 1) * 0.05
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def sx(step: int) -> float:
        return PAD_LEFT + (step - x0) / (x1 - x0) * plot_w

    def sy(value: float) -> float:
        if value == math.inf:
            return PAD_TOP
        if value == -math.inf:
            return PAD_TOP + plot_h
        return PAD_TOP + (1 - (value - y0) / (y1 - y0)) * plot_h

    # axes, ticks and labels
    parts.append(
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>'
    )
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = sy(value)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{PAD_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    for i in range(5):
        step = x0 + (x1 - x0) * i / 4
        x = sx(round(step))
        parts.append(
            f'<text x="{x:.1f}" y="{PAD_TOP + plot_h + 16}" text-anchor="middle">{round(step)}</text>'
        )
    parts.append(f'<text x="{PAD_LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">step</text>')
    # the line: NaN splits it into segments, +/-inf become edge markers
    segments: list[list[str]] = [[]]
    markers = []
    for p in pts:
        if math.isnan(p.value):
            segments.append([])
        elif math.isinf(p.value):
            markers.append(f'<circle cx="{sx(p.step):.1f}" cy="{sy(p.value):.1f}" r="3" fill="#d62728"/>')
            segments.append([])
        else:
            segments[-1].append(f"{sx(p.step):.1f},{sy(p.value):.1f}")
    for seg in segments:
        if len(seg) == 1:
            cx, cy = seg[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#1f77b4"/>')
        elif seg:
            parts.append(
                f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{" ".join(seg)}"/>'
            )
    parts.extend(markers)
    parts.append("</svg>")
    return "".join(parts)


def render_html(run: Run, histories: dict[str, Sequence[MetricPoint]]) -> str:
    """A standalone page for one run: its params, latest metrics and one chart per metric."""
    esc = html.escape
    title = f"run {run.id[:12]} ({run.experiment}{' / ' + run.name if run.name else ''})"
    rows_params = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in sorted(run.params.items())
    )
    rows_metrics = "".join(
        f"<tr><td>{esc(k)}</td><td>{_fmt(m.last) if math.isfinite(m.last) else m.last}</td>"
        f"<td>{m.last_step}</td><td>{m.count}</td></tr>"
        for k, m in run.metrics.items()
    )
    charts = "".join(f"<figure>{render_svg(key, pts)}</figure>" for key, pts in histories.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>"
        "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin-bottom:16px}"
        "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}figure{margin:8px 0}"
        "</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p>status <b>{esc(run.status)}</b>, started {esc(run.start_time.isoformat())}, "
        f"git {esc(run.git_sha or 'unknown')}</p>"
        f"<h2>params</h2><table><tr><th>key</th><th>value</th></tr>{rows_params}</table>"
        "<h2>metrics</h2><table><tr><th>key</th><th>latest</th><th>step</th><th>points</th></tr>"
        f"{rows_metrics}</table>{charts}</body></html>"
    )
