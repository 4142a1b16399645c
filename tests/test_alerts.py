"""Alerts core on SQLite and PostgreSQL: dedup by key while open, resolve, re-fire, input checks,
audit events, HTTP routes and the CLI."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml import Loopml, load_settings
from loopml.alerts import Alert, Alerts
from loopml.cli import alerts as alerts_cli
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.serving.api.alerts import router as alerts_router
from loopml.serving.app import create_app
from loopml.storage.metadata.core import list_events


@pytest.fixture
def alerts(lm: Loopml) -> Alerts:
    return Alerts(lm.ctx)


def _events(lm: Loopml, key: str) -> list[tuple[str, str, str | None]]:
    with lm.ctx.db.session() as session:
        events = list_events(session, subject_type="alert", subject_id=key)
        return [(e.kind, e.actor, e.reason) for e in reversed(events)]


def test_firing_an_open_key_again_updates_it_instead_of_duplicating(lm: Loopml, alerts: Alerts) -> None:
    first = alerts.fire("demand.forecast_late", title="forecast late", source="demand", data={"week": 1})
    assert isinstance(first, Alert)
    assert (first.status, first.severity, first.fire_count, first.resolved_at) == ("open", "warning", 1, None)
    assert first.created_at.tzinfo is not None and first.last_fired_at == first.created_at
    again = alerts.fire(
        "demand.forecast_late", severity="critical", title="still late", detail="2 h", data={"week": 1}
    )
    assert again.id == first.id and again.fire_count == 2
    assert (again.severity, again.title, again.detail) == ("critical", "still late", "2 h")
    assert again.created_at == first.created_at and again.last_fired_at >= first.last_fired_at
    alerts.fire("other", title="x", severity="info")
    assert [a.key for a in alerts.list(status="open")] == ["other", "demand.forecast_late"]
    assert alerts.get(first.id) == again
    assert alerts.get_open("demand.forecast_late") == again
    assert _events(lm, "demand.forecast_late") == [
        ("alert.fired", "system", "forecast late"),
        ("alert.fired", "system", "still late"),
    ]
    body = json.loads(json.dumps(again.to_dict()))
    assert body["data"] == {"week": 1} and body["resolved_at"] is None
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_a_terse_repeat_keeps_detail_source_and_data(alerts: Alerts) -> None:
    alerts.fire("k", title="late", detail="step backtest failed", source="demand", data={"week": 49})
    again = alerts.fire("k", title="late")
    assert (again.detail, again.source, again.data, again.fire_count) == (
        "step backtest failed",
        "demand",
        {"week": 49},
        2,
    )
    replaced = alerts.fire("k", title="late", detail="now publish failed", data={})
    assert (replaced.detail, replaced.data) == ("now publish failed", {})


def test_resolve_then_fire_again_opens_a_new_alert(lm: Loopml, alerts: Alerts) -> None:
    first = alerts.fire("k", title="broken")
    alerts.fire("k", title="broken")
    resolved = alerts.resolve("k", reason="fixed upstream", actor="ana")
    assert resolved is not None and resolved.id == first.id
    assert resolved.status == "resolved" and resolved.resolved_at is not None and resolved.fire_count == 2
    assert alerts.resolve("k") is None  # nothing open: harmless, no event
    assert alerts.get_open("k") is None
    second = alerts.fire("k", title="broken again")
    assert second.id != first.id and second.fire_count == 1 and second.status == "open"
    assert [(a.id, a.status) for a in alerts.list()] == [(second.id, "open"), (first.id, "resolved")]
    assert [a.id for a in alerts.list(status="resolved")] == [first.id]
    assert [k for k, _, _ in _events(lm, "k")] == ["alert.fired"] * 2 + ["alert.resolved", "alert.fired"]
    assert ("alert.resolved", "ana", "fixed upstream") in _events(lm, "k")


def test_resolve_by_id_and_filters(alerts: Alerts) -> None:
    a = alerts.fire("a", title="A", severity="critical", source="demand")
    alerts.fire("b", title="B", severity="info", source="jobs")
    assert [x.key for x in alerts.list(severity="critical")] == ["a"]
    assert [x.key for x in alerts.list(source="jobs")] == ["b"]
    assert len(alerts.list(limit=1)) == 1
    done = alerts.resolve_id(a.id, reason="ack", actor="ops")
    assert done.status == "resolved"
    with pytest.raises(ConflictError, match="already resolved"):
        alerts.resolve_id(a.id)
    with pytest.raises(NotFoundError, match="alert 999 does not exist"):
        alerts.resolve_id(999)
    with pytest.raises(NotFoundError, match="loopml alerts list"):
        alerts.get(999)


def test_concurrent_fires_of_one_key_keep_one_open_alert(alerts: Alerts) -> None:
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            for _ in range(5):
                alerts.fire("race", title="same problem")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    found = alerts.list(key="race")
    assert len(found) == 1 and found[0].fire_count == 20


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "key"),
        ({"key": "   "}, "key"),
        ({"key": 42}, "key"),
        ({"key": "a\nb"}, "key"),
        ({"key": "k" * 201}, "key"),
        ({"severity": "fatal"}, "severity"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"title": "t" * 501}, "title"),
        ({"detail": 3}, "detail"),
        ({"source": "s" * 101}, "source"),
        ({"data": [1, 2]}, "data"),
        ({"data": {"x": math.nan}}, "data"),
        ({"data": {"when": datetime(2026, 1, 1, tzinfo=UTC)}}, "data"),
        ({"data": {1: "a"}}, "data"),
        ({"data": {"blob": "x" * 70_000}}, "data"),
        ({"actor": ""}, "actor"),
    ],
)
def test_fire_rejects_bad_input(alerts: Alerts, kwargs: dict, field: str) -> None:
    args = {"key": "k", "title": "t", **kwargs}
    with pytest.raises(ValidationError) as info:
        alerts.fire(args.pop("key"), **args)
    assert info.value.field == field and field in str(info.value)
    assert alerts.list() == []


def test_other_entry_points_reject_bad_input(alerts: Alerts) -> None:
    for call, field in [
        (lambda: alerts.list(status="closed"), "status"),
        (lambda: alerts.list(severity="bad"), "severity"),
        (lambda: alerts.list(limit=0), "limit"),
        (lambda: alerts.list(limit=True), "limit"),
        (lambda: alerts.get(0), "alert_id"),
        (lambda: alerts.get("1"), "alert_id"),
        (lambda: alerts.resolve(""), "key"),
        (lambda: alerts.resolve("k", reason=None), "reason"),
        (lambda: alerts.resolve_id(1, reason="r" * 2001), "reason"),
    ]:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field, field


@pytest.fixture
def http(lm: Loopml) -> Iterator[TestClient]:
    lm.settings.api_token = "s3cret"
    with TestClient(create_app(lm, routers=[alerts_router]), raise_server_exceptions=False) as client:
        yield client


def test_http_list_get_and_resolve(http: TestClient, lm: Loopml, alerts: Alerts) -> None:
    a = alerts.fire("late", title="forecast late", severity="critical", data={"store": 7})
    alerts.fire("info", title="fyi", severity="info")
    body = http.get("/v1/alerts", params={"severity": "critical"}).json()
    assert [(x["id"], x["data"]) for x in body["alerts"]] == [(a.id, {"store": 7})]
    assert len(http.get("/v1/alerts", params={"status": "open"}).json()["alerts"]) == 2
    assert http.get(f"/v1/alerts/{a.id}").json()["title"] == "forecast late"

    bad = http.get("/v1/alerts", params={"status": "closed"})
    assert bad.status_code == 422 and bad.json()["field"] == "status"
    assert http.get("/v1/alerts/12345").status_code == 404
    assert http.get("/v1/alerts/0").status_code == 422

    url = f"/v1/alerts/{a.id}/resolve"
    assert http.post(url).status_code == 401
    ok = http.post(
        url,
        json={"reason": "published by hand"},
        headers={"Authorization": "Bearer s3cret", "X-Loopml-Actor": "ana"},
    )
    assert ok.status_code == 200 and ok.json()["status"] == "resolved"
    assert ("alert.resolved", "ana", "published by hand") in _events(lm, "late")
    again = http.post(url, headers={"Authorization": "Bearer s3cret"})
    assert again.status_code == 409 and "already resolved" in again.json()["detail"]
    extra = http.post(
        f"/v1/alerts/{a.id}/resolve", json={"why": "x"}, headers={"Authorization": "Bearer s3cret"}
    )
    assert extra.status_code == 422


runner = CliRunner()


@pytest.fixture
def cli(
    tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[typer.Typer, Loopml]]:
    """A root app with only the alerts group, pointed (via LOOPML_*) at the test database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_METADATA_URL", metadata_url)
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps "alerts" a sub-group
    alerts_cli.register(app)
    lm = Loopml(load_settings())
    yield app, lm
    lm.close()


def test_cli_list_and_resolve(cli: tuple[typer.Typer, Loopml]) -> None:
    app, lm = cli
    for _ in range(2):
        lm.alerts.fire("late", title="forecast late", severity="critical")

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    assert "forecast late" in ok("alerts", "list") and "alerts (1)" in ok("alerts", "list")
    data = json.loads(ok("alerts", "list", "--status", "open", "--json"))
    assert [(x["key"], x["severity"]) for x in data] == [("late", "critical")]
    assert "resolved after 2 firing(s)" in ok("alerts", "resolve", "late", "--reason", "done")
    assert "nothing to resolve" in ok("alerts", "resolve", "late")
    assert json.loads(ok("alerts", "list", "--status", "open", "--json")) == []
    assert "forecast late" in ok("alerts", "show", str(data[0]["id"]))
    bad = runner.invoke(app, ["alerts", "list", "--status", "closed"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ValidationError)


def test_firing_many_times_on_one_connection_keeps_deduplicating(lm: Loopml) -> None:
    """psycopg prepares a statement after 5 runs; the upsert must still find the partial unique index."""
    for round_ in range(12):
        for key in ("prep.a", "prep.b"):
            lm.alerts.fire(key, title=f"round {round_}")
    open_alerts = lm.alerts.list(status="open")
    assert sorted(a.key for a in open_alerts if a.key.startswith("prep.")) == ["prep.a", "prep.b"]
    assert all(a.fire_count == 12 for a in open_alerts if a.key.startswith("prep."))
