"""A monitor's HTML report: drift per feature, share of drifted features, performance and traffic.

One self-contained file (Plotly.js is inlined from the dashboard's vendored copy), so it can be
mailed, attached to an incident or opened offline. Figures are plain ``{"data", "layout"}`` dicts,
the same shape the dashboard's ``charts.js`` draws.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from loopml.monitoring.windows import MonitorInfo, MonitorWindow

PLOTLY = Path(__file__).resolve().parent.parent / "web" / "static" / "vendor" / "plotly.min.js"
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#c2255c", "#5c940d")
#: Metrics drawn first when present (the rest of the classification/regression set follows).
HEADLINE = ("auc", "accuracy", "precision", "recall", "f1", "mae", "rmse", "wape", "bias")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "yaxis": {"title": {"text": y_title}, "zeroline": False},
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
        "height": 360,
    }
    layout.update(extra)
    return layout


def drift_figures(windows: Sequence[MonitorWindow]) -> list[dict[str, Any]]:
    """One chart per feature: the statistic per window, its threshold, drifted windows marked."""
    features: dict[str, None] = {}
    for w in windows:
        features.update(dict.fromkeys((w.drift or {}).get("features", {})))
    figures = []
    for feature in features:
        xs, ys, thresholds, flagged_x, flagged_y, test = [], [], [], [], [], ""
        for w in windows:
            item = (w.drift or {}).get("features", {}).get(feature)
            if item is None:
                continue
            xs.append(w.window_start.isoformat())
            ys.append(_num(item["statistic"]))
            thresholds.append(_num(item["threshold"]))
            test = item["test"]
            if item["drifted"]:
                flagged_x.append(xs[-1])
                flagged_y.append(ys[-1])
        data = [
            {
                "x": xs,
                "y": ys,
                "type": "scatter",
                "mode": "lines+markers",
                "name": test,
                "line": {"color": PALETTE[0]},
            },
            {
                "x": xs,
                "y": thresholds,
                "type": "scatter",
                "mode": "lines",
                "name": "threshold",
                "line": {"dash": "dash", "color": "#868e96"},
            },
            {
                "x": flagged_x,
                "y": flagged_y,
                "type": "scatter",
                "mode": "markers",
                "name": "drifted",
                "marker": {"color": "#e03131", "size": 10},
            },
        ]
        figures.append({"data": data, "layout": _layout(f"drift: {feature} ({test})", "statistic")})
    return figures


def overview_figures(windows: Sequence[MonitorWindow]) -> list[dict[str, Any]]:
    """Share of drifted features and rows / labelled rows per window."""
    xs = [w.window_start.isoformat() for w in windows]
    share = [_num((w.drift or {}).get("share_drifted")) for w in windows]
    limit = [_num((w.drift or {}).get("drift_share")) for w in windows]
    return [
        {
            "data": [
                {
                    "x": xs,
                    "y": share,
                    "type": "bar",
                    "name": "share of drifted features",
                    "marker": {"color": PALETTE[1]},
                },
                {
                    "x": xs,
                    "y": limit,
                    "type": "scatter",
                    "mode": "lines",
                    "name": "dataset drift at",
                    "line": {"dash": "dash", "color": "#868e96"},
                },
            ],
            "layout": _layout("share of drifted features per window", "share", yaxis={"range": [0, 1]}),
        },
        {
            "data": [
                {
                    "x": xs,
                    "y": [w.rows for w in windows],
                    "type": "bar",
                    "name": "requests",
                    "marker": {"color": PALETTE[0]},
                },
                {
                    "x": xs,
                    "y": [w.labelled for w in windows],
                    "type": "bar",
                    "name": "labelled",
                    "marker": {"color": PALETTE[2]},
                },
            ],
            "layout": _layout("requests and labelled requests per window", "rows", barmode="group"),
        },
    ]


def performance_figures(windows: Sequence[MonitorWindow]) -> list[dict[str, Any]]:
    """Headline metrics per window, then one chart per slice column with each slice's first metric."""
    perf = [(w, w.performance) for w in windows if w.performance and w.performance.get("metrics")]
    if not perf:
        return []
    metrics = [m for m in HEADLINE if any(m in p["metrics"] for _, p in perf)]
    xs = [w.window_start.isoformat() for w, _ in perf]
    data = [
        {
            "x": xs,
            "y": [_num(p["metrics"].get(m)) for _, p in perf],
            "type": "scatter",
            "mode": "lines+markers",
            "name": m,
            "line": {"color": PALETTE[i % len(PALETTE)]},
        }
        for i, m in enumerate(metrics)
    ]
    figures = [{"data": data, "layout": _layout(f"performance ({perf[0][1]['task']})", "value")}]
    headline = metrics[0] if metrics else None
    columns: dict[str, None] = {}
    for _, p in perf:
        columns.update(dict.fromkeys(p.get("slices", {})))
    for column in columns:
        values: dict[str, None] = {}
        for _, p in perf:
            values.update(dict.fromkeys(p["slices"].get(column, {})))
        traces = []
        for j, value in enumerate(values):
            ys = [_num(p["slices"].get(column, {}).get(value, {}).get(headline)) for _, p in perf]
            traces.append(
                {
                    "x": xs,
                    "y": ys,
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{column}={value}",
                    "line": {"color": PALETTE[j % len(PALETTE)]},
                }
            )
        figures.append({"data": traces, "layout": _layout(f"{headline} by {column}", headline or "value")})
    return figures


def render_report(info: MonitorInfo, windows: Sequence[MonitorWindow]) -> str:
    """The whole report as one HTML document."""
    figures = overview_figures(windows) + performance_figures(windows) + drift_figures(windows)
    drifted = sum(1 for w in windows if (w.drift or {}).get("dataset_drifted"))
    span = (
        f"{windows[0].window_start:%Y-%m-%d %H:%M} to {windows[-1].window_end:%Y-%m-%d %H:%M} UTC"
        if windows
        else "no windows yet"
    )
    source = (info.reference or {}).get("source", info.spec.reference)
    divs = "\n".join(f'<div class="chart" id="fig{i}"></div>' for i in range(len(figures)))
    payload = orjson.dumps(figures).decode().replace("</", "<\\/")
    plotly = PLOTLY.read_text(encoding="utf-8") if PLOTLY.is_file() else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>monitor {html.escape(info.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#212529}} .chart{{margin:12px 0}}
table{{border-collapse:collapse}} td{{padding:2px 12px 2px 0}} .muted{{color:#868e96}}</style>
<script>{plotly}</script></head><body>
<h1>monitor {html.escape(info.name)}</h1>
<table>
<tr><td class="muted">endpoint</td><td>{html.escape(info.endpoint)}</td></tr>
<tr><td class="muted">reference</td><td>{html.escape(str(source))}</td></tr>
<tr><td class="muted">windows</td><td>{len(windows)} ({html.escape(span)}), {drifted} with dataset drift</td></tr>
<tr><td class="muted">window</td><td>{info.spec.window_seconds} s</td></tr>
</table>
{divs or '<p class="muted">No windows computed yet: run the monitor first.</p>'}
<script>
const figures = {payload};
figures.forEach((f, i) => Plotly.newPlot("fig" + i, f.data, f.layout, {{responsive: true, displaylogo: false}}));
</script></body></html>
"""
