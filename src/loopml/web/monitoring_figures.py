"""Plotly figures for the monitoring pages (health, monitors, SLOs, loop), as JSON-ready dicts.

Like ``endpoint_figures``: each function takes plain records (stored drift / performance dicts,
SLO readings, loop steps) and returns ``{"data": [...], "layout": {...}}`` for
``static/js/charts.js``, or None when there is nothing to draw, so the template shows an empty
state instead of an empty chart. NaN/inf become None and times ISO text, so ``tojson`` is valid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from loopml.web.endpoint_figures import PALETTE, _clean, _layout

OK = "#2b8a3e"
WARN = "#f08c00"
BAD = "#c92a2a"
INFO = "#3b5bdb"
GREY = "#868e96"
REF = "#868e96"
CUR = "#e8590c"
SEVERITY_COLORS = {"critical": BAD, "warning": WARN, "info": INFO}
#: Colours of loop-run and step statuses (and alert severities in a story).
STATUS_COLORS = {
    "ok": OK,
    "promoted": OK,
    "resolved": OK,
    "running": INFO,
    "waiting": WARN,
    "waiting_approval": WARN,
    "warning": WARN,
    "info": INFO,
    "blocked": WARN,
    "skipped": GREY,
    "rejected": GREY,
    "failed": BAD,
    "rolled_back": BAD,
    "critical": BAD,
}
P_VALUE_TESTS = ("ks", "chi2")
#: The heatmap's colour scale tops out at this multiple of the threshold (3x is "clearly drifted").
SCORE_CAP = 3.0
SPARK_HEIGHT = 60
#: Budget bars are drawn down to this (fully spent and then as much again); labels keep the real value.
BUDGET_FLOOR = -1.0


def status_color(status: str | None) -> str:
    return STATUS_COLORS.get(str(status), GREY)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _hline(y: float, color: str = GREY, dash: str = "dash", yref: str = "y") -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": yref,
        "y0": y,
        "y1": y,
        "line": {"color": color, "dash": dash, "width": 1.5},
    }


# -- small multiples -------------------------------------------------------------------------------
def sparkline(
    x: Sequence[Any], y: Sequence[Any], *, color: str = INFO, name: str = "", kind: str = "line"
) -> dict[str, Any] | None:
    """A 60-px chart without axes: the shape of a series next to its headline number."""
    values = _clean(y)
    if not any(v is not None for v in values):
        return None
    trace: dict[str, Any] = {"x": [_when(v) for v in x], "y": values, "name": name, "hoverinfo": "x+y"}
    if kind == "bar":
        trace.update(type="bar", marker={"color": color})
    else:
        trace.update(type="scatter", mode="lines", line={"color": color, "width": 1.5, "shape": "hv"})
    hidden = {"visible": False, "fixedrange": True}
    layout = {
        "height": SPARK_HEIGHT,
        "margin": {"l": 2, "r": 2, "t": 2, "b": 2},
        "xaxis": hidden,
        "yaxis": {**hidden, "rangemode": "tozero"},
        "showlegend": False,
        "bargap": 0.1,
    }
    return {"data": [trace], "layout": layout}


def _when(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# -- health overview -------------------------------------------------------------------------------
def budget_bars(slos: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Error budget left per SLO (1 = untouched, 0 = spent, below 0 overspent), red when the last
    reading missed its objective."""
    shown = [s for s in slos if _num(s.get("budget_remaining")) is not None]
    if not shown:
        return None
    names = [s["name"] for s in shown]
    values = [_num(s["budget_remaining"]) for s in shown]
    colors = [
        BAD if (v is not None and v < 0) or s.get("ok") is False else (WARN if (v or 0) < 0.25 else OK)
        for s, v in zip(shown, values, strict=True)
    ]
    # an overspent budget (-6900 %) would squash the others: draw it at -100 %, label the real value
    drawn = [max(v, BUDGET_FLOOR) for v in values if v is not None]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "y": names,
            "x": drawn,
            "marker": {"color": colors},
            "text": [f"{v:.0%}" for v in values if v is not None],
            "textposition": "auto",
            "hovertemplate": "%{y}: %{text} of the budget left<extra></extra>",
        }
    ]
    layout = _layout("Error budget remaining", "", showlegend=False)
    layout["xaxis"].update(tickformat=".0%", range=[BUDGET_FLOOR - 0.05, 1.05])
    layout["yaxis"] = {"automargin": True, "autorange": "reversed"}
    layout["height"] = max(180, 60 + 32 * len(names))
    layout["shapes"] = [
        {
            "type": "line",
            "yref": "paper",
            "y0": 0,
            "y1": 1,
            "x0": 0,
            "x1": 0,
            "line": {"color": BAD, "dash": "dot"},
        }
    ]
    return {"data": data, "layout": layout}


def alert_bars(counts: Mapping[str, int]) -> dict[str, Any] | None:
    """Open alerts per severity (critical first), coloured like the severity badges."""
    order = [s for s in ("critical", "warning", "info") if counts.get(s)]
    order += sorted(s for s in counts if s not in order and counts[s])
    if not order:
        return None
    data = [
        {
            "type": "bar",
            "x": order,
            "y": [counts[s] for s in order],
            "marker": {"color": [SEVERITY_COLORS.get(s, GREY) for s in order]},
            "text": [str(counts[s]) for s in order],
            "textposition": "auto",
            "hovertemplate": "%{x}: %{y} open<extra></extra>",
        }
    ]
    layout = _layout("Open alerts by severity", "open alerts", showlegend=False)
    layout["height"] = 320
    layout["bargap"] = 0.5
    return {"data": data, "layout": layout}


def queue_bars(queues: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Per queue: jobs waiting (bars) and the oldest one's age against its SLO objective (markers)."""
    if not queues:
        return None
    names = [q["name"] for q in queues]
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "queued",
            "x": names,
            "y": [q["queued"] for q in queues],
            "marker": {"color": INFO},
            "hovertemplate": "%{x}: %{y} queued<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "oldest age (s)",
            "x": names,
            "y": [_num(q.get("oldest_seconds")) for q in queues],
            "yaxis": "y2",
            "marker": {
                "size": 12,
                "color": [BAD if q.get("over_slo") else OK for q in queues],
                "symbol": "diamond",
            },
            "hovertemplate": "%{x}: oldest waited %{y:.0f} s<extra></extra>",
        },
    ]
    objectives = [
        (q["name"], _num(q.get("objective"))) for q in queues if _num(q.get("objective")) is not None
    ]
    if objectives:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "age objective (s)",
                "x": [n for n, _ in objectives],
                "y": [v for _, v in objectives],
                "yaxis": "y2",
                "marker": {"size": 22, "symbol": "line-ew-open", "color": BAD, "line": {"width": 2}},
                "hovertemplate": "%{x}: SLO %{y:.0f} s<extra></extra>",
            }
        )
    layout = _layout("Queues: depth and oldest wait", "jobs queued")
    layout["yaxis2"] = {
        "title": {"text": "oldest wait (s)"},
        "overlaying": "y",
        "side": "right",
        "rangemode": "tozero",
        "zeroline": False,
    }
    layout["height"] = 320
    layout["bargap"] = 0.6 if len(names) < 3 else 0.3
    layout["margin"] = {"l": 60, "r": 70, "t": 50, "b": 50}
    return {"data": data, "layout": layout}


def pipeline_runs_strip(
    runs: Sequence[Mapping[str, Any]], *, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """Every recent pipeline run as a dot on its pipeline's row, coloured by status, from ``start``
    (or the oldest run shown) to ``end``."""
    shown = [r for r in runs if r.get("created_at")]
    if not shown:
        return None
    by_status: dict[str, list[Mapping[str, Any]]] = {}
    for run in shown:
        by_status.setdefault(str(run["status"]), []).append(run)
    palette = {"succeeded": OK, "failed": BAD, "running": INFO, "queued": GREY, "cancelled": WARN}
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": status,
            "x": [_when(r["created_at"]) for r in members],
            "y": [r["pipeline"] for r in members],
            "customdata": [[r["id"], _num(r.get("duration_seconds"))] for r in members],
            "hovertemplate": "%{y} %{customdata[0]}<br>%{x}<br>" + status + "<extra></extra>",
            "marker": {"size": 11, "color": palette.get(status, GREY), "symbol": "square"},
        }
        for status, members in sorted(by_status.items())
    ]
    pipelines = {r["pipeline"] for r in shown}
    first = min([start, *(r["created_at"] for r in shown)])
    layout = _layout("Pipeline runs", "")
    layout["xaxis"].update(range=[_when(first), _when(end)], type="date")
    layout["yaxis"] = {"automargin": True, "type": "category"}
    layout["height"] = max(220, 110 + 34 * len(pipelines))
    return {"data": data, "layout": layout}


# -- monitors --------------------------------------------------------------------------------------
def drift_score(item: Mapping[str, Any]) -> float | None:
    """One feature's drift as a multiple of its threshold: >= 1 means drifted, for every test.

    Distance tests (psi, wasserstein, jensenshannon) give ``statistic / threshold``; p-value tests
    (ks, chi2) give ``log(p) / log(threshold)`` (p = threshold is 1, a ten times smaller p is more).
    """
    threshold = _num(item.get("threshold"))
    if threshold is None or threshold <= 0:
        return None
    if item.get("test") in P_VALUE_TESTS:
        p = _num(item.get("p_value"))
        if p is None or threshold >= 1:
            return None
        score = math.log(max(p, 1e-300)) / math.log(threshold)
    else:
        statistic = _num(item.get("statistic"))
        if statistic is None:
            return None
        score = statistic / threshold
    return round(max(0.0, min(score, SCORE_CAP)), 4)


def drift_heatmap(windows: Sequence[Mapping[str, Any]], features: Sequence[str]) -> dict[str, Any] | None:
    """Feature x window heatmap of ``drift_score`` (white below the threshold, red above)."""
    shown = [w for w in windows if w.get("drift")]
    if not shown or not features:
        return None
    x = [_when(w["window_start"]) for w in shown]
    z, text = [], []
    for feature in features:
        row, labels = [], []
        for w in shown:
            item = w["drift"].get("features", {}).get(feature)
            if item is None:
                row.append(None)
                labels.append("not measured")
                continue
            row.append(drift_score(item))
            value = item["p_value"] if item.get("test") in P_VALUE_TESTS else item.get("statistic")
            what = "p" if item.get("test") in P_VALUE_TESTS else "statistic"
            verdict = "DRIFTED" if item.get("drifted") else "no drift"
            labels.append(
                f"{item.get('test')} {what}={_fmt(value)} (threshold {_fmt(item.get('threshold'))}): {verdict}"
            )
        z.append(row)
        text.append(labels)
    data = [
        {
            "type": "heatmap",
            "x": x,
            "y": list(features),
            "z": z,
            "text": text,
            "zmin": 0,
            "zmax": SCORE_CAP,
            # below 1/SCORE_CAP of the scale (the threshold) pale, above it orange to dark red
            "colorscale": [
                [0, "#f8f9fa"],
                [0.333, "#fff3bf"],
                [0.334, "#ffa94d"],
                [0.66, BAD],
                [1, "#7b1010"],
            ],
            "colorbar": {"title": {"text": "x threshold"}, "thickness": 12},
            "hovertemplate": "%{y} · %{x}<br>%{text}<extra></extra>",
            "xgap": 1,
            "ygap": 1,
        }
    ]
    layout = _layout("Drift per feature and window (1 = threshold)", "")
    layout["yaxis"] = {"automargin": True, "type": "category", "autorange": "reversed"}
    layout["height"] = max(260, 120 + 26 * len(features))
    return {"data": data, "layout": layout}


def _fmt(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.4g}"


def feature_drift_line(feature: str, windows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One feature over time: the value its decision uses, the threshold, drifted windows in red.

    p-value tests plot the p-value on a log axis (drift below the line); distance tests plot the
    statistic (drift above it). When the chosen test changed between windows (the reference grew
    past 1000 rows, a config change), the unified ``drift_score`` is plotted instead.
    """
    points = []
    for w in windows:
        item = (w.get("drift") or {}).get("features", {}).get(feature)
        if item is not None:
            points.append((w["window_start"], item))
    if not points:
        return None
    tests = {item.get("test") for _, item in points}
    if tests <= set(P_VALUE_TESTS):
        mode, y_title = "p", "p-value (drift below the threshold)"
        ys = [_num(item.get("p_value")) for _, item in points]
        ys = [None if v is None else max(v, 1e-300) for v in ys]
        thresholds = [_num(item.get("threshold")) for _, item in points]
    elif not tests & set(P_VALUE_TESTS):
        mode, y_title = "stat", "statistic (drift at or above the threshold)"
        ys = [_num(item.get("statistic")) for _, item in points]
        thresholds = [_num(item.get("threshold")) for _, item in points]
    else:
        mode, y_title = "score", "x threshold (drift at or above 1)"
        ys = [drift_score(item) for _, item in points]
        thresholds = [1.0] * len(points)
    x = [_when(at) for at, _ in points]
    drifted = [bool(item.get("drifted")) for _, item in points]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": feature,
            "x": x,
            "y": ys,
            "text": [str(item.get("test")) for _, item in points],
            "hovertemplate": "%{x}<br>%{text}: %{y:.4g}<extra></extra>",
            "line": {"color": INFO, "width": 2},
            "marker": {"size": 8, "color": [BAD if d else INFO for d in drifted]},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "threshold",
            "x": x,
            "y": thresholds,
            "line": {"color": BAD, "dash": "dash", "width": 1.5, "shape": "hv"},
            "hoverinfo": "skip",
        },
    ]
    layout = _layout(f"{feature}: drift over time ({', '.join(sorted(map(str, tests)))})", y_title)
    if mode == "p":
        layout["yaxis"].update(type="log", rangemode="normal")
    return {"data": data, "layout": layout}


def distribution(feature: str, item: Mapping[str, Any] | None, window_label: str) -> dict[str, Any] | None:
    """Reference vs current shares of one feature in one window (numeric bins or categories)."""
    if not item:
        return None
    ref, cur = item.get("ref_hist") or {}, item.get("cur_hist") or {}
    if "edges" in ref and "edges" in cur:
        edges = [float(e) for e in ref["edges"]]
        mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        width = (edges[-1] - edges[0]) / max(len(mids), 1)
        x_ref = x_cur = mids  # both sides are binned on the same edges (drift._numeric_hists)
        extra: dict[str, Any] = {"width": width}
        x_title = feature
    elif "categories" in ref:
        x_ref = [str(c) for c in ref["categories"]]
        x_cur = [str(c) for c in cur.get("categories", ref["categories"])]
        extra, x_title = {}, f"{feature} (category)"
    else:
        return None
    data = [
        {
            "type": "bar",
            "name": f"reference (n={item.get('n_ref', 0):,})",
            "x": x_ref,
            "y": _clean(ref.get("shares", [])),
            "marker": {"color": REF},
            "opacity": 0.6,
            **extra,
        },
        {
            "type": "bar",
            "name": f"current (n={item.get('n_cur', 0):,})",
            "x": x_cur,
            "y": _clean(cur.get("shares", [])),
            "marker": {"color": CUR},
            "opacity": 0.6,
            **extra,
        },
    ]
    barmode = "overlay" if "edges" in ref else "group"
    verdict = "drifted" if item.get("drifted") else "no drift"
    layout = _layout(
        f"{feature} in {window_label}: reference vs current ({verdict})", "share of rows", barmode=barmode
    )
    layout["yaxis"]["tickformat"] = ".0%"
    layout["xaxis"]["title"] = {"text": x_title}
    return {"data": data, "layout": layout}


def share_drifted(windows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Share of drifted features per window against the dataset rule (``drift_share``)."""
    shown = [w for w in windows if w.get("drift")]
    if not shown:
        return None
    x = [_when(w["window_start"]) for w in shown]
    y = [_num(w["drift"].get("share_drifted")) for w in shown]
    flagged = [bool(w["drift"].get("dataset_drifted")) for w in shown]
    data = [
        {
            "type": "bar",
            "name": "share of features drifted",
            "x": x,
            "y": y,
            "marker": {"color": [BAD if f else INFO for f in flagged]},
            "customdata": [", ".join(w["drift"].get("drifted_features", [])) or "none" for w in shown],
            "hovertemplate": "%{x}<br>%{y:.0%} drifted: %{customdata}<extra></extra>",
        }
    ]
    layout = _layout("Share of drifted features (red: dataset drift)", "share", showlegend=False)
    layout["yaxis"].update(tickformat=".0%", range=[0, 1.05])
    share = _num(shown[-1]["drift"].get("drift_share"))
    if share is not None:
        layout["shapes"] = [_hline(share, BAD)]
    return {"data": data, "layout": layout}


#: Metrics drawn per task, in order (whatever of these the report has).
PERFORMANCE_METRICS = {
    "classification": ("auc", "precision", "recall", "accuracy"),
    "regression": ("mae", "wape", "rmse"),
}


def performance(windows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Performance metrics per window (lines) with label coverage (bars, right axis)."""
    shown = [w for w in windows if w.get("performance") and w["performance"].get("metrics")]
    if not shown:
        return None
    task = shown[-1]["performance"].get("task", "classification")
    x = [_when(w["window_start"]) for w in shown]
    data: list[dict[str, Any]] = []
    for i, metric in enumerate(PERFORMANCE_METRICS.get(task, ())):
        if not any(metric in w["performance"]["metrics"] for w in shown):
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": metric,
                "x": x,
                "y": _clean(w["performance"]["metrics"].get(metric) for w in shown),
                "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
                "marker": {"size": 6},
            }
        )
    all_x = [_when(w["window_start"]) for w in windows if w.get("rows")]
    coverage = [(w["labelled"] or 0) / w["rows"] for w in windows if w.get("rows")]
    data.append(
        {
            "type": "bar",
            "name": "label coverage",
            "x": all_x,
            "y": coverage,
            "yaxis": "y2",
            "marker": {"color": "rgba(134, 142, 150, 0.15)"},
            "hovertemplate": "%{x}<br>%{y:.0%} of rows labelled<extra></extra>",
        }
    )
    layout = _layout(f"Performance over time ({task})", "metric")
    layout["yaxis"]["rangemode"] = "normal"
    layout["yaxis2"] = {
        "title": {"text": "label coverage"},
        "overlaying": "y",
        "side": "right",
        "tickformat": ".0%",
        "range": [0, 1.05],
        "showgrid": False,
    }
    return {"data": data, "layout": layout}


def slice_bars(report: Mapping[str, Any] | None, metric: str, window_label: str) -> dict[str, Any] | None:
    """One window's metric per slice value, one group per slice column, with the overall value."""
    if not report or not report.get("slices"):
        return None
    data = []
    for i, (column, values) in enumerate(sorted(report["slices"].items())):
        names = [v for v in sorted(values) if metric in values[v]]
        if not names:
            continue
        gap = (report.get("gaps") or {}).get(column, {}).get(metric)
        data.append(
            {
                "type": "bar",
                "name": f"{column} (gap {_fmt(gap)})",
                "x": [f"{column}={v}" for v in names],
                "y": _clean(values[v][metric] for v in names),
                "customdata": [values[v].get("n") for v in names],
                "hovertemplate": "%{x}: %{y:.4g} (n=%{customdata})<extra></extra>",
                "marker": {"color": PALETTE[i % len(PALETTE)]},
            }
        )
    if not data:
        return None
    layout = _layout(f"{metric} per slice in {window_label}", metric)
    overall = _num((report.get("metrics") or {}).get(metric))
    if overall is not None:
        layout["shapes"] = [_hline(overall, GREY, "dot")]
    return {"data": data, "layout": layout}


def gaps(windows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """The slice gap (best minus worst slice) of ``metric`` per slice column over time."""
    columns: dict[str, list[tuple[Any, float | None]]] = {}
    for w in windows:
        perf = w.get("performance") or {}
        for column, values in (perf.get("gaps") or {}).items():
            columns.setdefault(column, []).append((w["window_start"], _num(values.get(metric))))
    columns = {c: pts for c, pts in columns.items() if any(v is not None for _, v in pts)}
    if not columns:
        return None
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": column,
            "x": [_when(at) for at, _ in points],
            "y": [v for _, v in points],
            "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
        }
        for i, (column, points) in enumerate(sorted(columns.items()))
    ]
    return {
        "data": data,
        "layout": _layout(f"Slice gap of {metric} over time (max - min)", f"gap in {metric}"),
    }


# -- SLOs ------------------------------------------------------------------------------------------
def slo_history(
    name: str, objective: float, unit: str, readings: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """Readings over time against the objective (red markers: missed) and budget left (right axis)."""
    if not readings:
        return None
    x = [_when(r["at"]) for r in readings]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "value",
            "x": x,
            "y": _clean(r.get("value") for r in readings),
            "line": {"color": INFO, "width": 2},
            "marker": {"size": 7, "color": [OK if r.get("ok") else BAD for r in readings]},
            "hovertemplate": "%{x}<br>%{y:.4g} " + unit + "<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "budget left",
            "x": x,
            "y": _clean(r.get("budget_remaining") for r in readings),
            "yaxis": "y2",
            "line": {"color": GREY, "width": 1.5, "dash": "dot"},
            "hovertemplate": "%{x}<br>%{y:.1%} budget left<extra></extra>",
        },
    ]
    layout = _layout(f"{name}: value vs objective {objective:g} {unit}", unit)
    layout["shapes"] = [_hline(float(objective), BAD)]
    layout["yaxis2"] = {
        "title": {"text": "error budget left"},
        "overlaying": "y",
        "side": "right",
        "tickformat": ".0%",
        "showgrid": False,
        "zeroline": True,
    }
    layout["height"] = 300
    return {"data": data, "layout": layout}


# -- loop ------------------------------------------------------------------------------------------
def loop_history(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Every loop run as a bar from start to finish (or now) on its policy's row, coloured by status."""
    if not runs:
        return None
    by_status: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_status.setdefault(str(run["status"]), []).append(run)
    data = []
    for status, members in sorted(by_status.items()):
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": status.replace("_", " "),
                "x": [v for r in members for v in (_when(r["created_at"]), _when(r["end"]), None)],
                "y": [v for r in members for v in (r["policy"], r["policy"], None)],
                "customdata": [v for r in members for v in (r["id"], r["id"], None)],
                "hovertemplate": "run %{customdata} · %{y}<br>%{x}<extra>" + status + "</extra>",
                "line": {"color": status_color(status), "width": 8},
                "marker": {"size": 9, "color": status_color(status)},
                "connectgaps": False,
            }
        )
    policies = {r["policy"] for r in runs}
    layout = _layout("Loop runs by policy", "")
    layout["yaxis"] = {"automargin": True, "type": "category"}
    layout["height"] = max(200, 120 + 40 * len(policies))
    return {"data": data, "layout": layout}


def story_timeline(story: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The story of one run from alert to outcome: one marker per event on its step's row, in time order."""
    if not story:
        return None
    steps: list[str] = []
    for item in story:
        if item["step"] not in steps:
            steps.append(item["step"])
    x = [_when(item["at"]) for item in story]
    y = [item["step"] for item in story]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "path",
            "x": x,
            "y": y,
            "line": {"color": "#ced4da", "width": 2},
            "hoverinfo": "skip",
            "showlegend": False,
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "events",
            "x": x,
            "y": y,
            "text": [f"{item['status']}: {str(item.get('detail') or '')[:160]}" for item in story],
            "hovertemplate": "%{y} · %{x}<br>%{text}<extra></extra>",
            "marker": {
                "size": 14,
                "color": [status_color(item["status"]) for item in story],
                "line": {"color": "#fff", "width": 1.5},
            },
            "showlegend": False,
        },
    ]
    layout = _layout("From alert to outcome", "")
    layout["yaxis"] = {
        "type": "category",
        "categoryorder": "array",
        "categoryarray": steps,
        "automargin": True,
        "autorange": "reversed",
    }
    layout["height"] = max(240, 100 + 34 * len(steps))
    return {"data": data, "layout": layout}
