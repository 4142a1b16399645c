"""Plotly figures for the endpoint pages, built on the server as plain JSON-ready dicts.

Each function takes what ``lm.inference`` returned (a timeline frame, per-arm output samples, an
``AbAnalysis``) and returns ``{"data": [...], "layout": {...}}`` for ``static/js/charts.js``, or
None when there is nothing to draw (the template then shows an empty-state line instead of an
empty chart). Times are ISO text and NaN is None, so ``tojson`` never emits invalid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

#: Arm colours in order of first appearance (control-like arms first, see ``arm_order``).
PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#c2255c", "#5c940d")
CONTROL_FIRST = ("control", "baseline", "primary", "champion", "a", "A", "default")
#: Output values per arm drawn in the prediction histogram (a sample is enough for a shape).
HIST_SAMPLE = 5_000


def arm_order(arms: Iterable[str]) -> list[str]:
    """Control-like arms first, then alphabetical, so colours stay put when traffic shifts."""
    unique = sorted(set(arms))
    first = [a for a in CONTROL_FIRST if a in unique]
    return first + [a for a in unique if a not in first]


def colors(arms: Iterable[str]) -> dict[str, str]:
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(arm_order(arms))}


def _clean(values: Iterable[Any]) -> list[Any]:
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        number = float(v)
        out.append(number if math.isfinite(number) else None)
    return out


def _iso(values: Iterable[Any]) -> list[str]:
    return [pd.Timestamp(v).isoformat() for v in values]


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "yaxis": {"title": {"text": y_title}, "zeroline": False, "rangemode": "tozero"},
        "xaxis": {"zeroline": False},
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    }
    layout.update(extra)
    return layout


def _full_grid(
    timeline: pd.DataFrame, start: datetime, end: datetime, bucket_seconds: int
) -> pd.DatetimeIndex:
    """Every bucket start from ``start`` to ``end``: a quiet minute is a zero, not a line across it."""
    step = pd.Timedelta(seconds=bucket_seconds)
    first = pd.Timestamp(start).floor(step)
    last = pd.Timestamp(end).floor(step)
    if len(timeline):
        first = min(first, timeline["bucket"].min())
        last = max(last, timeline["bucket"].max())
    return pd.date_range(first, last, freq=step)


def requests_figure(
    timeline: pd.DataFrame, *, start: datetime, end: datetime, bucket_seconds: int
) -> dict[str, Any] | None:
    """Requests per minute by arm (bucket counts scaled to a minute, empty buckets as zero)."""
    if timeline.empty:
        return None
    grid = _full_grid(timeline, start, end, bucket_seconds)
    per_minute = 60.0 / bucket_seconds
    palette = colors(timeline["arm"])
    data = []
    for arm in arm_order(timeline["arm"]):
        rows = timeline[timeline["arm"] == arm].set_index("bucket")["requests"]
        counts = rows.reindex(grid, fill_value=0).astype(float) * per_minute
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": arm,
                "x": _iso(grid),
                "y": _clean(counts),
                "line": {"color": palette[arm], "width": 2, "shape": "hv"},
            }
        )
    return {"data": data, "layout": _layout("Requests per minute by arm", "requests / min")}


def latency_figure(timeline: pd.DataFrame) -> dict[str, Any] | None:
    """p50 (solid) and p99 (dashed) latency per arm and bucket."""
    if timeline.empty:
        return None
    palette = colors(timeline["arm"])
    data = []
    for arm in arm_order(timeline["arm"]):
        rows = timeline[timeline["arm"] == arm]
        x = _iso(rows["bucket"])
        for column, dash in (("p50_ms", "solid"), ("p99_ms", "dash")):
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if len(rows) < 3 else "lines",
                    "name": f"{arm} {column[:3]}",
                    "legendgroup": arm,
                    "x": x,
                    "y": _clean(rows[column]),
                    "line": {"color": palette[arm], "width": 2, "dash": dash},
                    "marker": {"size": 5},
                }
            )
    return {"data": data, "layout": _layout("Latency p50 / p99 by arm", "ms")}


def error_rate_figure(timeline: pd.DataFrame) -> dict[str, Any] | None:
    """Share of requests per bucket that were not answered by the model (errors and fallbacks)."""
    if timeline.empty:
        return None
    palette = colors(timeline["arm"])
    data = []
    for arm in arm_order(timeline["arm"]):
        rows = timeline[timeline["arm"] == arm]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(rows) < 3 else "lines",
                "name": arm,
                "x": _iso(rows["bucket"]),
                "y": _clean(rows["error_rate"]),
                "customdata": [
                    [int(e), int(n)] for e, n in zip(rows["errors"], rows["requests"], strict=True)
                ],
                "hovertemplate": "%{y:.1%} (%{customdata[0]} of %{customdata[1]})",
                "line": {"color": palette[arm], "width": 2},
                "marker": {"size": 5},
            }
        )
    layout = _layout("Error rate by arm", "errors / requests")
    layout["yaxis"]["tickformat"] = ".1%"
    return {"data": data, "layout": layout}


def distribution_figure(outputs: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    """Overlaid histograms of each arm's scores, as percent of the arm's requests (arms differ in size)."""
    arms = [a for a in arm_order(outputs) if len(outputs[a])]
    if not arms:
        return None
    palette = colors(outputs)
    values = np.concatenate([np.asarray(outputs[a], dtype=float)[-HIST_SAMPLE:] for a in arms])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    low, high = float(values.min()), float(values.max())
    size = (high - low) / 40 if high > low else 1.0
    data = []
    for arm in arms:
        sample = np.asarray(outputs[arm], dtype=float)[-HIST_SAMPLE:]
        sample = sample[np.isfinite(sample)]
        data.append(
            {
                "type": "histogram",
                "name": f"{arm} (n={sample.size:,})",
                "x": _clean(sample),
                "histnorm": "percent",
                "opacity": 0.55,
                "marker": {"color": palette[arm]},
                "xbins": {"start": low, "end": high + size, "size": size},
            }
        )
    layout = _layout("Prediction distribution per arm", "% of the arm's requests", barmode="overlay")
    layout["xaxis"]["title"] = {"text": "output (score or value)"}
    return {"data": data, "layout": layout}


def ab_figure(arms: Sequence[Mapping[str, Any]], metric: str, confidence: float) -> dict[str, Any] | None:
    """The metric per arm with its bootstrap CI as error bars."""
    shown = [a for a in arms if a.get("value") is not None]
    if not shown:
        return None
    palette = colors(a["arm"] for a in arms)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": a["arm"],
            "x": [a["arm"]],
            "y": [a["value"]],
            "marker": {"size": 12, "color": palette[a["arm"]]},
            "error_y": _error_bars([a]),
        }
        for a in shown
    ]
    pct = round(confidence * 100)
    layout = _layout(f"{metric} per arm ({pct} % CI)", metric, showlegend=False)
    layout["yaxis"]["rangemode"] = "normal"
    return {"data": data, "layout": layout}


def diff_figure(arms: Sequence[Mapping[str, Any]], metric: str, control: str | None) -> dict[str, Any] | None:
    """Each arm's difference to the control with its CI; the zero line is "no difference"."""
    shown = [a for a in arms if not a.get("is_control") and a.get("diff") is not None]
    if not shown:
        return None
    palette = colors(a["arm"] for a in arms)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": a["arm"],
            "x": [a["arm"]],
            "y": [a["diff"]],
            "marker": {"size": 12, "symbol": "diamond", "color": palette[a["arm"]]},
            "error_y": _error_bars([a], value="diff", low="diff_low", high="diff_high"),
        }
        for a in shown
    ]
    layout = _layout(f"{metric} difference to {control}", f"Δ {metric}", showlegend=False)
    layout["yaxis"]["rangemode"] = "normal"
    layout["yaxis"]["zeroline"] = True
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": 0,
            "y1": 0,
            "line": {"color": "#868e96", "dash": "dot"},
        }
    ]
    return {"data": data, "layout": layout}


def _error_bars(
    arms: Sequence[Mapping[str, Any]], *, value: str = "value", low: str = "ci_low", high: str = "ci_high"
) -> dict[str, Any]:
    plus, minus = [], []
    for a in arms:
        v, lo, hi = a.get(value), a.get(low), a.get(high)
        plus.append(None if v is None or hi is None else max(hi - v, 0.0))
        minus.append(None if v is None or lo is None else max(v - lo, 0.0))
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True}
