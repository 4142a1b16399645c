"""The demand app's published tables, HTTP API (JSON and CSV) and dashboard pages, on small frames.

Data is published with ``results.publish`` itself (three stores, a few weeks, hourly), so the tests
check the real write/read path through partitioned datasets, not a mock.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.apps.demand import results
from loopml.apps.demand.contracts import DATASETS, VISITS
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.app import create_app

WEEKS = ["2026-11-16", "2026-11-23", "2026-11-30"]
STORES = (1, 2, 3)
HOURS = range(10, 20)
ARM = {1: "champion", 2: "challenger", 3: "champion"}


def hourly_profile(store: int, ts: pd.DatetimeIndex) -> np.ndarray:
    return 20.0 * store + 5.0 * np.sin(ts.hour.to_numpy() / 3.0) + 3.0 * ts.day_of_week.to_numpy()


def week_hours(week: str) -> pd.DatetimeIndex:
    days = pd.date_range(week, periods=7, freq="D")
    return pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in days for h in HOURS])


def forecasts_for(week: str, run_id: str = "run-1") -> pd.DataFrame:
    rows = []
    hours = week_hours(week)
    for store in STORES:
        base = hourly_profile(store, hours)
        for arm, model, version, bias in (
            ("champion", "demand/1", 1, 1.0),
            ("challenger", "demand/2", 2, 1.05),
        ):
            hourly = pd.DataFrame({"ts": hours, "forecast": base * bias})
            daily = hourly.groupby(hourly["ts"].dt.normalize())["forecast"].sum().reset_index()
            for grain, frame in (("hour", hourly), ("day", daily)):
                rows.append(
                    frame.assign(
                        store_id=store,
                        grain=grain,
                        lower=frame["forecast"] * 0.8,
                        upper=frame["forecast"] * 1.2,
                        model=model,
                        model_version=version,
                        arm=arm,
                        used=ARM[store] == arm,
                        run_id=run_id,
                    )
                )
    return pd.concat(rows, ignore_index=True)


def staffing_for(week: str) -> pd.DataFrame:
    hours = week_hours(week)
    rows = []
    for store in STORES:
        visitors = hourly_profile(store, hours)
        staff = np.maximum(3, np.ceil(visitors / 12.0)).astype(int)
        rows.append(
            pd.DataFrame(
                {
                    "store_id": store,
                    "ts": hours,
                    "visitors_forecast": visitors,
                    "staff": staff,
                    "arm": ARM[store],
                    "model_version": 1 if ARM[store] == "champion" else 2,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def evaluation_for(week: str) -> pd.DataFrame:
    rows = []
    for store in STORES:
        for arm, model, version, wape in (
            ("champion", "demand/1", 1, 0.10),
            ("challenger", "demand/2", 2, 0.12),
            ("baseline", "seasonal_naive", 0, 0.25),
        ):
            actual = 1000.0 * store
            rows.append(
                dict(
                    store_id=store,
                    arm=arm,
                    model=model,
                    model_version=version,
                    used=arm == ARM[store],
                    mae=wape * 10,
                    rmse=wape * 12,
                    wape=wape,
                    actual=actual,
                    forecast=actual * (1 + wape),
                    staff_hours_planned=300.0,
                    staff_hours_needed=290.0,
                    over_hours=15.0,
                    under_hours=5.0,
                    cost_over=180_000.0,
                    cost_under=90_000.0,
                    cost_total=270_000.0,
                    naive_fixed_cost=400_000.0,
                    naive_snaive_cost=350_000.0,
                )
            )
    return pd.DataFrame(rows)


@dataclass
class Ab:
    weeks: int
    stores: int
    champion_wape: float
    challenger_wape: float
    diff: float
    ci_low: float
    ci_high: float
    verdict: str
    explanation: str


def populate(lm: Loopml, *, weeks: list[str] = WEEKS, evaluate: int = 2, ab: bool = True) -> None:
    for week in weeks:
        results.publish(lm, week, forecasts_for(week), staffing_for(week), actor="test")
    visits = []
    for week in weeks[:evaluate]:
        hours = week_hours(week)
        for store in STORES:
            visits.append(
                pd.DataFrame({"store_id": store, "ts": hours, "visitors": hourly_profile(store, hours) * 1.1})
            )
        results.publish_evaluation(lm, week, evaluation_for(week), actor="test")
    if visits:
        lm.datasets.ingest(DATASETS["visits"], pd.concat(visits), contract=VISITS, partition_by="ts")
    if ab:
        results.publish_ab(
            lm,
            weeks[evaluate - 1],
            Ab(2, 3, 0.10, 0.12, -0.02, -0.05, 0.01, "no clear difference", "The interval includes zero."),
        )


@pytest.fixture
def client(lm_sqlite: Loopml) -> TestClient:
    populate(lm_sqlite)
    return TestClient(create_app(lm_sqlite))


# -- results -------------------------------------------------------------------------------------
def test_publish_is_idempotent_and_reads_one_week(lm_sqlite: Loopml) -> None:
    first = results.publish(lm_sqlite, WEEKS[0], forecasts_for(WEEKS[0]), staffing_for(WEEKS[0]))
    again = results.publish(
        lm_sqlite, WEEKS[0], forecasts_for(WEEKS[0]).sample(frac=1, random_state=1), staffing_for(WEEKS[0])
    )
    assert first["forecasts"]["new_version"] and not again["forecasts"]["new_version"]
    assert again["forecasts"]["version"] == first["forecasts"]["version"]
    results.publish(lm_sqlite, WEEKS[1], forecasts_for(WEEKS[1], run_id="run-2"), staffing_for(WEEKS[1]))
    assert results.weeks(lm_sqlite) == WEEKS[:2]
    week = results.read_forecasts(lm_sqlite, week=WEEKS[1], store=2, grain="day", used_only=True)
    assert set(week["run_id"]) == {"run-2"} and set(week["arm"]) == {"challenger"} and len(week) == 7
    assert week["ts"].dt.tz is None and (week["week"] == pd.Timestamp(WEEKS[1])).all()
    staffing = results.read_staffing(lm_sqlite, week=WEEKS[0])
    assert len(staffing) == len(STORES) * 7 * len(HOURS) and staffing["staff"].min() >= 3


def test_reads_of_one_week_touch_only_its_partition(
    lm_sqlite: Loopml, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(lm_sqlite, ab=False)
    seen: list[Any] = []
    original = lm_sqlite.datasets.read

    def spy(name: str, *args: Any, **kwargs: Any) -> pd.DataFrame:
        seen.append((name, kwargs.get("partitions")))
        return original(name, *args, **kwargs)

    monkeypatch.setattr(lm_sqlite.datasets, "read", spy)
    results.read_forecasts(lm_sqlite, week=WEEKS[2], store=1)
    assert seen == [(DATASETS["forecasts"], [WEEKS[2]])]


def test_publish_rejects_bad_input(lm_sqlite: Loopml) -> None:
    fc, st = forecasts_for(WEEKS[0]), staffing_for(WEEKS[0])
    with pytest.raises(ValidationError, match="week=2026-11-17 is a Tuesday"):
        results.publish(lm_sqlite, "2026-11-17", fc, st)
    with pytest.raises(ValidationError, match="not an ISO date"):
        results.publish(lm_sqlite, "next week", fc, st)
    with pytest.raises(ValidationError, match="no rows"):
        results.publish(lm_sqlite, WEEKS[0], fc.iloc[0:0], st)
    with pytest.raises(ValidationError, match="missing column"):
        results.publish(lm_sqlite, WEEKS[0], fc.drop(columns=["upper"]), st)
    bad = fc.copy()
    bad.loc[3, "forecast"] = np.nan
    with pytest.raises(ValidationError, match=r"forecasts\.forecast has 1 missing, NaN or infinite"):
        results.publish(lm_sqlite, WEEKS[0], bad, st)
    bad = fc.copy()
    bad.loc[0, "lower"] = np.inf
    with pytest.raises(ValidationError, match=r"forecasts\.lower"):
        results.publish(lm_sqlite, WEEKS[0], bad, st)
    with pytest.raises(ValidationError, match="outside week"):
        results.publish(lm_sqlite, WEEKS[1], fc.drop(columns=[]), st)
    with pytest.raises(ValidationError, match="duplicate"):
        results.publish(lm_sqlite, WEEKS[0], pd.concat([fc, fc.head(1)]), st)
    with pytest.raises(ValidationError, match="whole, non-negative"):
        results.publish(lm_sqlite, WEEKS[0], fc, st.assign(staff=st["staff"] - 10))
    with pytest.raises(ValidationError, match="DataFrame"):
        results.publish(lm_sqlite, WEEKS[0], "forecasts.csv", st)  # type: ignore[arg-type]
    assert results.weeks(lm_sqlite) == []  # nothing half-published


def test_reads_name_the_known_range(lm_sqlite: Loopml) -> None:
    with pytest.raises(NotFoundError, match="no demand forecasts have been published yet"):
        results.read_forecasts(lm_sqlite)
    populate(lm_sqlite, ab=False)
    with pytest.raises(NotFoundError, match=r"published weeks: 2026-11-16 \.\. 2026-11-30 \(3 weeks\)"):
        results.read_forecasts(lm_sqlite, week="2026-12-07")
    with pytest.raises(NotFoundError, match=r"stores are 1\.\.3"):
        results.read_staffing(lm_sqlite, week=WEEKS[0], store=9)
    with pytest.raises(ValidationError, match="store=0"):
        results.read_staffing(lm_sqlite, store=0)
    with pytest.raises(NotFoundError, match="no A/B analysis"):
        results.read_ab(lm_sqlite)
    assert results.weeks(lm_sqlite, "evaluation") == WEEKS[:2]


def test_to_csv_round_trips() -> None:
    frame = forecasts_for(WEEKS[0]).assign(week=pd.Timestamp(WEEKS[0])).head(5)
    text = results.to_csv(frame)
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == list(frame.columns)
    assert back["ts"].iloc[0] == "2026-11-16T10:00:00" and back["week"].iloc[0] == WEEKS[0]
    np.testing.assert_allclose(back["forecast"], frame["forecast"])
    with pytest.raises(ValidationError):
        results.to_csv([1, 2])  # type: ignore[arg-type]


# -- HTTP API ------------------------------------------------------------------------------------
def test_api_forecasts_and_staffing(client: TestClient) -> None:
    weeks = client.get("/v1/demand/weeks").json()
    assert weeks == {"forecasts": WEEKS, "staffing": WEEKS, "evaluation": WEEKS[:2], "latest": WEEKS[-1]}
    body = client.get("/v1/demand/forecasts", params={"store": 2, "week": WEEKS[0]}).json()
    assert body["grain"] == "day" and body["total"] == 7 and not body["truncated"]
    row = body["rows"][0]
    assert row["ts"] == "2026-11-16T00:00:00" and row["week"] == WEEKS[0] and row["arm"] == "challenger"
    assert row["lower"] < row["forecast"] < row["upper"] and row["model_version"] == 2
    latest = client.get("/v1/demand/forecasts", params={"grain": "hour", "limit": 50}).json()
    assert latest["week"] == WEEKS[-1] and latest["count"] == 50 and latest["truncated"]
    assert latest["total"] == len(STORES) * 7 * len(HOURS)
    both = client.get("/v1/demand/forecasts", params={"store": 1, "include_shadow": True}).json()
    assert {r["arm"] for r in both["rows"]} == {"champion", "challenger"}
    staffing = client.get("/v1/demand/staffing", params={"store": 3, "week": WEEKS[1]}).json()
    assert staffing["total"] == 7 * len(HOURS) and min(r["staff"] for r in staffing["rows"]) >= 3


def test_api_csv_export(client: TestClient) -> None:
    response = client.get("/v1/demand/staffing", params={"week": WEEKS[0], "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="demand_staffing_2026-11-16.csv"' in response.headers["content-disposition"]
    frame = pd.read_csv(io.StringIO(response.text))
    assert len(frame) == len(STORES) * 7 * len(HOURS) and set(frame["store_id"]) == set(STORES)
    capped = client.get(
        "/v1/demand/forecasts", params={"grain": "hour", "format": "csv", "limit": 10, "store": 1}
    )
    assert len(pd.read_csv(io.StringIO(capped.text))) == 10 and capped.headers["x-truncated"] == "true"
    assert 'store-1.csv"' in capped.headers["content-disposition"]


def test_api_evaluation_and_ab(client: TestClient) -> None:
    body = client.get("/v1/demand/evaluation").json()
    assert body["total"] == len(WEEKS[:2]) * len(STORES) * 3
    summary = body["summary"]
    assert summary["published_wape"] == pytest.approx((0.10 * 4000 + 0.12 * 2000) / 6000)
    assert summary["naive_wape"] == pytest.approx(0.25)
    assert summary["saved_vs_fixed"] == pytest.approx(2 * 3 * 130_000.0)
    one = client.get("/v1/demand/evaluation", params={"week": WEEKS[1], "store": 1}).json()
    assert one["total"] == 3
    ab = client.get("/v1/demand/ab").json()
    assert ab["latest"]["verdict"] == "no clear difference" and ab["latest"]["week"] == WEEKS[1]


BAD_PARAMETERS = [
    ({"week": "2026-11-17"}, 422, "week", "is a Tuesday; weeks are named by their Monday, e.g. 2026-11-16"),
    ({"week": "soon"}, 422, "week", "e.g. 2026-12-07"),
    ({"store": "0"}, 422, "store", "greater than or equal to 1"),
    ({"store": "abc"}, 422, "store", "integer"),
    ({"limit": "100001"}, 422, "limit", "100000"),
    ({"limit": "0"}, 422, "limit", "greater than or equal to 1"),
    ({"grain": "minute"}, 422, "grain", "hour"),
    ({"format": "xml"}, 422, "format", "csv"),
    ({"week": "2026-12-07"}, 404, "week", "published weeks: 2026-11-16 .. 2026-11-30 (3 weeks)"),
    ({"week": "2026-11-16", "store": "42"}, 404, "store", "stores are 1..3 (3 stores)"),
]


def test_api_bad_parameters(client: TestClient) -> None:
    for params, status, field, text in BAD_PARAMETERS:
        for path in ("/v1/demand/forecasts", "/v1/demand/staffing"):
            if path.endswith("staffing") and set(params) & {"grain"}:
                continue
            response = client.get(path, params=params)
            assert response.status_code == status, (path, params, response.text)
            body = response.json()
            assert body["field"] == field and text in body["detail"], (path, params, body)
            assert set(body) >= {"error", "detail", "field"}
    evaluation = client.get("/v1/demand/evaluation", params={"week": "2026-11-30"})
    assert evaluation.status_code == 404 and "2026-11-16 .. 2026-11-23" in evaluation.json()["detail"]


def test_api_404_before_anything_is_published(lm_sqlite: Loopml) -> None:
    client = TestClient(create_app(lm_sqlite))
    for path in ("/v1/demand/forecasts", "/v1/demand/staffing", "/v1/demand/evaluation", "/v1/demand/ab"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "demand" in response.json()["detail"] and "pipeline" in response.json()["detail"]
    assert client.get("/v1/demand/weeks").json()["latest"] is None
    page = client.get("/ui/demand")
    assert page.status_code == 200 and "No forecasts have been published yet" in page.text


# -- plug-in and pages ---------------------------------------------------------------------------
def test_app_plugin_mounts_routes_and_nav(lm_sqlite: Loopml) -> None:
    with_demand = TestClient(create_app(lm_sqlite))
    assert 'href="/ui/demand"' in with_demand.get("/ui/").text
    assert "/v1/demand/forecasts" in with_demand.get("/openapi.json").json()["paths"]
    without = TestClient(create_app(lm_sqlite, apps=()))
    assert without.get("/v1/demand/weeks").status_code == 404
    assert 'href="/ui/demand"' not in without.get("/ui/").text
    broken = TestClient(create_app(lm_sqlite, apps=("loopml.apps.no_such_app.web",)))  # logged, skipped
    assert broken.get("/healthz").status_code == 200


def test_pages_render_with_data(client: TestClient) -> None:
    overview = client.get("/ui/demand")
    assert overview.status_code == 200
    text = overview.text
    assert 'data-testid="top-stores"' in text and "store 3" in text and 'data-testid="plot-errors"' in text
    assert "no clear difference" in text and "Why trust this plan" in text
    assert "interval coverage" in text and "100.0 %" in text  # actuals 10% above the forecast, inside +-20%
    store = client.get("/ui/demand/stores/2", params={"week": WEEKS[0]})
    assert store.status_code == 200
    for name in ("plot-day", "plot-hour", "plot-heatmap", "plot-errors"):
        assert f'data-testid="{name}"' in store.text
    assert "demand/2" in store.text and "challenger" in store.text
    staffing = client.get("/ui/demand/staffing")
    assert (
        staffing.status_code == 200
        and WEEKS[-1] in staffing.text
        and 'data-testid="plot-stores"' in staffing.text
    )
    ab = client.get("/ui/demand/ab")
    assert (
        ab.status_code == 200
        and "The interval includes zero." in ab.text
        and 'data-testid="plot-ci"' in ab.text
    )


def test_pages_report_bad_input_as_html(client: TestClient) -> None:
    bad_week = client.get("/ui/demand/stores/1", params={"week": "2026-11-18"})
    assert bad_week.status_code == 422 and "text/html" in bad_week.headers["content-type"]
    assert "2026-11-16" in bad_week.text
    unknown = client.get("/ui/demand/stores/77")
    assert unknown.status_code == 404 and "stores are 1..3" in unknown.text
    assert 'href="/ui/demand"' in unknown.text  # the error page keeps the app's nav
