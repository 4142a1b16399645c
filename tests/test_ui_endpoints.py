"""Endpoint, A/B and alert pages of the dashboard over a real endpoint, logged traffic and feedback.

``populate_endpoint`` is shared with the Playwright test in tests/browser/test_endpoint_pages.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from loopml import Loopml
from loopml.errors import ValidationError
from loopml.serving.app import create_app
from loopml.serving.endpoints import AB, Canary, EndpointSpec, Fallback, Single
from loopml.serving.inference import InferenceRecord
from loopml.web import endpoint_figures, endpoint_pages
from ui_pages import page_figure, ui_client

ENDPOINT = "fraud"
REQUESTS = 400
ROLLBACK_REASON = "canary p99 latency 2.4x the baseline p99 (max 1.5x)"


def _classifier() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"amount": rng.normal(size=200), "hour": rng.normal(size=200)})
    y = (X.amount + 0.3 * rng.normal(size=200) > 0).astype(int)
    return LogisticRegression().fit(X, y), X.head(5)


def populate_endpoint(lm: Loopml, *, requests: int = REQUESTS) -> dict[str, Any]:
    """An A/B endpoint that went through a canary and a watchdog rollback, with logged traffic over the
    last 50 minutes, shadow results, labels (treatment scores better) and an alert about it."""
    model, example = _classifier()
    lm.registry.register("fraud", model, input_example=example)
    lm.registry.register("fraud", model, input_example=example)
    lm.endpoints.create(
        EndpointSpec(ENDPOINT, Single("fraud/1"), fallback=Fallback(0.0), description="card fraud scores"),
        actor="alice",
        reason="first release",
    )
    lm.endpoints.set_policy(
        ENDPOINT, Canary("fraud/1", "fraud/2", weight=0.2), actor="alice", reason="canary v2"
    )
    lm.endpoints.rollback_canary(ENDPOINT, actor="canary-watchdog", reason=ROLLBACK_REASON)
    lm.endpoints.set_policy(
        ENDPOINT,
        AB({"control": "fraud/1", "treatment": "fraud/2"}, routing_key="card"),
        actor="bob",
        reason="A/B instead",
    )
    rng = np.random.default_rng(1)
    now = datetime.now(UTC)
    records, labels = [], []
    for i in range(requests):
        arm = ("control", "treatment")[i % 2]
        y = int(rng.random() < 0.3)
        noise = 0.35 if arm == "control" else 0.15  # the treatment separates the classes better
        p = float(np.clip(0.3 + 0.4 * y + rng.normal(scale=noise), 0.001, 0.999))
        status = "error" if i % 40 == 7 else "ok"
        shadow = None
        if i % 4 == 0:
            shadow = [
                {
                    "arm": "shadow:fraud/3",
                    "model": "fraud",
                    "version": 3,
                    "outputs": [{"label": int(p > 0.5), "probability": p}],
                    "latency_ms": 2.0 + i % 3,
                    "error": None,
                    "agreement": 0.0 if i % 20 == 0 else 1.0,
                }
            ]
        records.append(
            InferenceRecord(
                request_id=f"req-{i}",
                endpoint=ENDPOINT,
                model="fraud",
                version=1 if arm == "control" else 2,
                arm=arm,
                inputs=[{"amount": float(i), "hour": float(i % 24)}],
                outputs=[{"label": int(p > 0.5), "probability": p}] if status == "ok" else [0.0],
                latency_ms=1.0 + (i % 5) + (3.0 if arm == "treatment" else 0.0),
                status=status,
                routing_key=f"card-{i}",
                shadow=shadow,
                at=now - timedelta(minutes=50) + timedelta(seconds=i * 3000 / requests),
            )
        )
        if status == "ok":
            labels.append({"request_id": f"req-{i}", "label": y})
    lm.inference.write(records)
    lm.inference.feedback_many(ENDPOINT, labels, actor="chargebacks")
    lm.alerts.fire(
        f"endpoint.canary_rolled_back:{ENDPOINT}",
        severity="warning",
        title=f"Endpoint {ENDPOINT}: canary fraud/2 rolled back",
        detail=ROLLBACK_REASON,
        source="endpoints",
        data={"endpoint": ENDPOINT, "canary": "fraud/2"},
    )
    return {"endpoint": ENDPOINT, "requests": requests, "errors": sum(r.status != "ok" for r in records)}


@pytest.fixture
def ui(lm: Loopml) -> TestClient:
    return ui_client(lm)


def test_endpoint_list_shows_policy_traffic_latency_and_alerts(lm: Loopml, ui: TestClient) -> None:
    data = populate_endpoint(lm)
    page = ui.get("/ui/endpoints")
    assert page.status_code == 200, page.text
    text = page.text
    assert 'href="/ui/endpoints/fraud"' in text and 'data-testid="endpoint-fraud"' in text
    assert "control: " in text and "fraud/2" in text and "(50 %)" in text  # arms with their share
    assert f">{data['requests']}<" in text  # requests in the last hour
    assert f"{data['errors'] / data['requests'] * 100:.2f} %" in text
    assert "canary fraud/2 rolled back" in text
    rows = endpoint_pages.endpoints(lm)["endpoints"]
    assert rows[0]["revision"] == 4 and rows[0]["kind"] == "ab"
    assert [lat["arm"] for lat in rows[0]["latency"]] == ["control", "treatment"]
    control, treatment = rows[0]["latency"]
    assert treatment["p50"] > control["p50"]  # the treatment was logged 3 ms slower


def test_endpoint_page_draws_traffic_ab_shadow_and_history(lm: Loopml, ui: TestClient) -> None:
    data = populate_endpoint(lm)
    page = ui.get("/ui/endpoints/fraud")
    assert page.status_code == 200, page.text
    text = page.text
    for name in ("requests", "latency", "errors", "distribution", "ab", "ab-diff"):
        assert f'data-testid="plot-{name}"' in text
    requests = page_figure(text, "requests")
    assert [t["name"] for t in requests["data"]] == ["control", "treatment"]
    assert (
        sum(sum(t["y"]) for t in requests["data"]) == data["requests"]
    )  # minute buckets: per minute = count
    errors = page_figure(text, "errors")
    assert errors["layout"]["yaxis"]["tickformat"] == ".1%"
    assert sum(sum(c[0] for c in t["customdata"]) for t in errors["data"]) == data["errors"]
    latency = page_figure(text, "latency")
    assert {t["name"] for t in latency["data"]} == {
        "control p50",
        "control p99",
        "treatment p50",
        "treatment p99",
    }
    histogram = page_figure(text, "distribution")
    assert {t["type"] for t in histogram["data"]} == {"histogram"}
    assert histogram["layout"]["barmode"] == "overlay"
    # A/B: AUC per arm with CI error bars, the difference to the control and a verdict.
    ab = page_figure(text, "ab")
    assert [t["name"] for t in ab["data"]] == ["control", "treatment"]
    assert all(t["error_y"]["array"][0] is not None for t in ab["data"])
    diff = page_figure(text, "ab-diff")
    assert diff["data"][0]["name"] == "treatment" and diff["data"][0]["y"][0] > 0
    assert "treatment is better" in text and "excludes zero" in text and "auc" in text
    # History with the watchdog's reason; the alert shows as a banner; shadow agreement.
    assert ROLLBACK_REASON in text and "canary-watchdog" in text
    assert "canary: fraud/1 80 % | fraud/2 20 %" in text
    assert 'data-testid="endpoint-alert"' in text
    assert "shadow:fraud/3" in text and "80.0 %" in text  # one shadowed request in five disagreed
    # A wider window and all-time feedback work too.
    assert ui.get("/ui/endpoints/fraud?window=7d&ab=all").status_code == 200


def test_timeline_buckets_per_arm(lm: Loopml) -> None:
    data = populate_endpoint(lm, requests=120)
    frame = lm.inference.timeline(ENDPOINT, since=timedelta(hours=1))
    assert list(frame.columns) == ["bucket", "arm", "requests", "errors", "error_rate", "p50_ms", "p99_ms"]
    assert int(frame["requests"].sum()) == data["requests"] and int(frame["errors"].sum()) == data["errors"]
    assert set(frame["arm"]) == {"control", "treatment"}
    assert (frame["bucket"].dt.second == 0).all()  # minute buckets start on the minute
    assert (frame["error_rate"] == frame["errors"] / frame["requests"]).all()
    hourly = lm.inference.timeline(ENDPOINT, since=timedelta(hours=2), bucket_seconds=7 * 86400)
    assert hourly.groupby("arm")["requests"].sum().to_dict() == {"control": 60, "treatment": 60}
    assert lm.inference.timeline(ENDPOINT, since=timedelta(seconds=1)).empty
    assert lm.inference.timeline("nobody", since=timedelta(hours=1)).empty


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": None}, "since"),
        ({"since": timedelta(hours=1), "bucket_seconds": 0}, "bucket_seconds"),
        ({"since": timedelta(hours=1), "bucket_seconds": True}, "bucket_seconds"),
        ({"since": timedelta(hours=1), "bucket_seconds": "60"}, "bucket_seconds"),
        ({"since": timedelta(hours=1), "bucket_seconds": 10**9}, "bucket_seconds"),
        ({"since": "yesterday"}, "since"),
        ({"since": timedelta(hours=-1)}, "since"),
    ],
)
def test_timeline_rejects_bad_arguments(lm_sqlite: Loopml, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        lm_sqlite.inference.timeline(ENDPOINT, **kwargs)
    assert info.value.field == field


def test_empty_states(lm_sqlite: Loopml) -> None:
    ui = TestClient(create_app(lm_sqlite, apps=()))
    assert "No endpoints yet" in ui.get("/ui/endpoints").text
    alerts = ui.get("/ui/alerts")
    assert (
        alerts.status_code == 200
        and "No open alerts" in alerts.text
        and "No alerts have fired" in alerts.text
    )
    model, example = _classifier()
    lm_sqlite.registry.register("fraud", model, input_example=example)
    lm_sqlite.endpoints.create(EndpointSpec("quiet", Single("fraud/1")), actor="alice")
    listing = ui.get("/ui/endpoints").text
    assert "no traffic" in listing and "none" in listing
    page = ui.get("/ui/endpoints/quiet")
    assert page.status_code == 200
    assert "No requests in the last 1h" in page.text and "data-figure" not in page.text
    assert "not enough data" in page.text and "Shadow comparison" not in page.text


def test_unknown_endpoint_and_bad_window_are_error_pages(lm_sqlite: Loopml) -> None:
    ui = TestClient(create_app(lm_sqlite, apps=()))
    model, example = _classifier()
    lm_sqlite.registry.register("fraud", model, input_example=example)
    lm_sqlite.endpoints.create(EndpointSpec("fraud", Single("fraud/1")), actor="alice")
    missing = ui.get("/ui/endpoints/frad", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "frad" in missing.text and "<html" in missing.text
    bad = ui.get("/ui/endpoints/fraud?window=2h", headers={"accept": "text/html"})
    assert bad.status_code == 422 and "window" in bad.text and "1h, 6h, 24h, 7d, 30d" in bad.text
    assert ui.get("/ui/endpoints/fraud?ab=forever").status_code == 422
    assert ui.get("/ui/alerts?severity=loud").status_code == 422


def test_alerts_page_lists_open_and_resolved_with_filters(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    ui = TestClient(create_app(lm, apps=()))
    for _ in range(3):
        lm.alerts.fire(
            "endpoint.load_failed:fraud",
            severity="critical",
            title="fraud v3 failed to load",
            detail="checksum mismatch",
            source="endpoints",
            data={"endpoint": "fraud"},
        )
    lm.alerts.fire("demand.late", severity="warning", title="forecast late", source="demand")
    lm.alerts.fire("old.thing", severity="info", title="old incident", source="demand")
    lm.alerts.resolve("old.thing", reason="gone")
    text = ui.get("/ui/alerts").text
    assert "fraud v3 failed to load" in text and "checksum mismatch" in text
    assert 'href="/ui/endpoints/fraud"' in text and "1 critical, 1 warning" in text
    assert re.search(r'<td class="num">3</td>', text)  # fire count
    assert "old incident" in text  # recent (resolved) list
    open_part = text.split('data-testid="open-alerts"')[1].split("Recently fired")[0]
    assert "old incident" not in open_part
    critical = ui.get("/ui/alerts?severity=critical&source=endpoints").text
    assert "fraud v3 failed to load" in critical and "forecast late" not in critical
    resolved = ui.get("/ui/alerts?status=resolved").text
    assert "old incident" in resolved and 'data-testid="open-alerts"' not in resolved


def test_overview_has_endpoint_and_alert_cards_and_nav(lm_sqlite: Loopml) -> None:
    populate_endpoint(lm_sqlite, requests=20)
    ui = TestClient(create_app(lm_sqlite, apps=()))
    text = ui.get("/ui/").text
    nav = text.split('<nav class="nav">')[1].split("</nav>")[0]
    assert re.search(r'href="/ui/endpoints"[^>]*>Endpoints</a>', nav)
    assert re.search(r'href="/ui/alerts"[^>]*>Alerts</a>', nav)
    endpoints_card = text.split('data-testid="card-endpoints"')[1].split("</div>\n  </div>")[0]
    assert 'href="/ui/endpoints">1</a>' in endpoints_card
    alerts_card = text.split('data-testid="card-alerts"')[1].split('<div class="card"')[0]
    assert 'href="/ui/alerts">1</a>' in alerts_card and "0 critical" in alerts_card
    assert 'href="/ui/endpoints/fraud"' in text  # audit events link to the endpoint


def test_traffic_served_by_the_runtime_shows_on_the_page(lm_sqlite: Loopml) -> None:
    model, example = _classifier()
    lm_sqlite.registry.register("fraud", model, input_example=example)
    lm_sqlite.endpoints.create(EndpointSpec("live", Single("fraud/1")), actor="alice")
    with TestClient(create_app(lm_sqlite, apps=())) as client:
        for i in range(5):
            r = client.post("/v1/endpoints/live/predict", json={"row": {"amount": i / 2, "hour": 1.0}})
            assert r.status_code == 200, r.text
        lm_sqlite.inference.flush()
        page = client.get("/ui/endpoints/live")
    assert page.status_code == 200
    requests = page_figure(page.text, "requests")
    assert sum(sum(t["y"]) for t in requests["data"]) == 5 and requests["data"][0]["name"] == "primary"


def test_cli_ab_prints_the_analysis(lm_sqlite: Loopml, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.cli import endpoints as endpoints_cli

    populate_endpoint(lm_sqlite, requests=200)
    monkeypatch.setattr(endpoints_cli, "client", lambda: lm_sqlite)
    monkeypatch.setattr(lm_sqlite, "close", lambda: None)
    import typer

    app = typer.Typer()
    endpoints_cli.register(app)
    result = CliRunner().invoke(app, ["endpoints", "ab", ENDPOINT, "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert "treatment" in result.output and "verdict" in result.output
    assert not result.output.lstrip().startswith("{")  # the readable table, not JSON
    result = CliRunner().invoke(app, ["endpoints", "ab", ENDPOINT, "--n-boot", "200", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["metric"] == "auc"


def test_figures_handle_empty_and_odd_input() -> None:
    empty = pd.DataFrame(columns=["bucket", "arm", "requests", "errors", "error_rate", "p50_ms", "p99_ms"])
    now = datetime.now(UTC)
    assert endpoint_figures.requests_figure(empty, start=now, end=now, bucket_seconds=60) is None
    assert (
        endpoint_figures.latency_figure(empty) is None and endpoint_figures.error_rate_figure(empty) is None
    )
    assert endpoint_figures.distribution_figure({"a": np.array([])}) is None
    assert endpoint_figures.distribution_figure({"a": np.array([np.nan, np.inf])}) is None
    same = endpoint_figures.distribution_figure({"a": np.array([0.5, 0.5])})
    assert same is not None and same["data"][0]["xbins"]["size"] == 1.0
    assert endpoint_figures.ab_figure([{"arm": "a", "value": None}], "auc", 0.95) is None
    assert endpoint_figures.diff_figure([{"arm": "a", "is_control": True, "diff": None}], "auc", "a") is None
    assert endpoint_figures.arm_order(["z", "canary", "baseline"]) == ["baseline", "canary", "z"]
