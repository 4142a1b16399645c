"""Dashboard pages over real data on SQLite and PostgreSQL (server-rendered HTML, checked as text).

``populate_dashboard`` is shared with the Playwright test in tests/browser/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.pipelines import pipeline, step
from loopml.serving.app import create_app


@step
def ui_load(rows: int) -> pd.DataFrame:
    print(f"loading {rows} rows")
    return pd.DataFrame({"x": range(rows)})


@step
def ui_total(ui_load: pd.DataFrame) -> dict:
    return {"total": int(ui_load["x"].sum())}


@pipeline("ui_demo", params={"rows": 5})
def ui_demo():
    """Two steps, so the run page has a DAG to show."""
    return [ui_load, ui_total]


@dataclass
class DashboardData:
    dataset: str
    quarantined: int
    run_id: str
    pipeline_run_id: str
    model: str
    dead_job_id: int


def populate_dashboard(lm: Loopml) -> DashboardData:
    """Real records in every domain: a dataset with bad rows, a run with metrics, a gated model ..."""
    from sklearn.linear_model import LinearRegression

    from loopml.data import Column, Contract
    from loopml.registry.gates import LatencyBudget

    contract = Contract(
        columns=[Column("store", "int", min=1), Column("visits", "int", min=0), Column("temp", "float")],
        max_bad_share=0.5,
    )
    frame = pd.DataFrame(
        {
            "store": [1, 2, 3, 4, 5, 6, 0, 8],
            "visits": [10, 20, 30, 40, 50, -1, 70, 80],
            "temp": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5],
        }
    )
    ingest = lm.datasets.ingest("store_visits", frame, contract=contract, actor="ana")
    version = ingest.version

    with lm.tracking.start_run(
        "demand", name="baseline-lr", params={"alpha": 0.5, "features": "temp"}
    ) as run:
        for i in range(6):
            run.log_metric("rmse", 10.0 / (i + 1), step=i)
        run.log_metric("mae", 3.25, step=0)
        run.log_input(version)
        run_id = run.id
    lm.tracking.flush()

    good = lm.datasets.read("store_visits")
    features = good[["temp"]].astype("float64")
    target = good["visits"].astype("float64")
    first = LinearRegression().fit(features, target)
    second = LinearRegression(fit_intercept=False).fit(features, target)
    example = features.head(3)
    lm.registry.register(
        "visits_model",
        first,
        input_example=example,
        metrics={"rmse": 4.2},
        run_id=run_id,
        dataset_version_ids=[version.id],
        description="Visitors per store from temperature.",
    )
    lm.registry.register("visits_model", second, input_example=example, metrics={"rmse": 3.9}, run_id=run_id)
    lm.registry.set_alias("visits_model", "champion", 1, actor="ana", reason="first model")
    lm.registry.protect("visits_model", "champion", [LatencyBudget(p99_ms=2000, n=20)], actor="ana")
    lm.registry.promote("visits_model", 2, "champion", actor="ana", reason="lower rmse")
    lm.registry.set_alias("visits_model", "challenger", 1, actor="ana", reason="keep v1 in shadow")

    pipe_run = lm.pipelines.run("ui_demo", {"rows": 4})

    from loopml.features import Entity, FeatureView

    store_entity = Entity("store", join_key="store")
    weather = pd.DataFrame(
        {
            "store": [1, 2, 1],
            "event_ts": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-02"], utc=True),
            "temp_avg": [3.0, 4.0, 5.0],
        }
    )
    lm.features.register(
        store_entity,
        FeatureView("store_weather", entity=store_entity, features={"temp_avg": "float"}, source=weather),
    )
    lm.features.materialize()

    job = lm.jobs.enqueue("ui.broken", {"why": "demo"}, max_attempts=1)
    claimed = lm.jobs.claim("ui-test-worker", limit=1)
    assert [j.id for j in claimed] == [job.id]
    lm.jobs.fail(job.id, "ui-test-worker", "ValueError: the handler exploded", retry=False)
    return DashboardData("store_visits", ingest.rows_quarantined, run_id, pipe_run.id, "visits_model", job.id)


@pytest.fixture
def ui(lm: Loopml) -> Iterator[tuple[TestClient, DashboardData]]:
    data = populate_dashboard(lm)
    with TestClient(create_app(lm), raise_server_exceptions=False) as http:
        yield http, data


def test_every_page_renders_the_real_data(ui: tuple[TestClient, DashboardData]) -> None:
    http, data = ui
    assert data.quarantined == 2

    overview = http.get("/ui/")
    assert overview.status_code == 200
    assert 'data-testid="card-datasets"' in overview.text
    assert "dataset.version_created" in overview.text and "job.dead" in overview.text

    datasets = http.get("/ui/datasets").text
    assert '<a href="/ui/datasets/store_visits">store_visits</a>' in datasets

    dataset = http.get("/ui/datasets/store_visits").text
    assert 'data-testid="quarantined-count">2<' in dataset
    assert "store: greater_than_or_equal_to(1)" in dataset
    assert "visits: greater_than_or_equal_to(0)" in dataset or "visits: in_range" in dataset
    assert ">temp<" in dataset

    runs = http.get("/ui/runs").text
    assert "baseline-lr" in runs and f"/ui/runs/{data.run_id}" in runs

    run = http.get(f"/ui/runs/{data.run_id}").text
    assert 'data-metric="rmse"' in run and 'data-metric="mae"' in run
    assert "/static/vendor/plotly.min.js" in run
    assert "store_visits@1" in run and "/ui/datasets/store_visits?version=1" in run

    models = http.get("/ui/models").text
    assert "visits_model" in models and "champion → v2" in models

    model = http.get("/ui/models/visits_model").text
    assert 'data-testid="alias-champion"' in model and "v2" in model
    assert 'data-testid="alias-challenger"' in model
    assert "latency_budget" in model or "LatencyBudget" in model
    assert f"/ui/runs/{data.run_id}" in model and "store_visits@1" in model

    pipelines = http.get("/ui/pipelines").text
    assert "ui_demo" in pipelines and f"/ui/pipelines/runs/{data.pipeline_run_id}" in pipelines

    pipe_run = http.get(f"/ui/pipelines/runs/{data.pipeline_run_id}").text
    assert "ui_load" in pipe_run and "ui_total" in pipe_run and "loading 4 rows" in pipe_run

    jobs = http.get("/ui/jobs").text
    assert 'data-testid="dead-letters"' in jobs and "the handler exploded" in jobs

    features = http.get("/ui/features")
    assert features.status_code == 200
    assert 'data-testid="feature-views"' in features.text
    assert "store_weather" in features.text and "temp_avg" in features.text
    assert "succeeded" in features.text  # the materialisation shows with its status


def test_unknown_names_render_a_404_page_that_names_them(ui: tuple[TestClient, DashboardData]) -> None:
    http, _ = ui
    for path, name in (
        ("/ui/datasets/store_visit", "store_visits"),
        ("/ui/models/visits_modl", "visits_model"),
        ("/ui/runs/nope", "nope"),
        ("/ui/pipelines/runs/nope", "nope"),
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert 'data-testid="error"' in response.text and name in response.text, path
    bad_query = http.get("/ui/datasets/store_visits", params={"version": "two"})
    assert bad_query.status_code == 422 and "version" in bad_query.text


def test_missing_module_shows_not_available(lm: Loopml, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Loopml) -> None:
        raise ImportError("No module named 'loopml.registry'")

    monkeypatch.setattr(Loopml, "registry", property(broken), raising=False)
    with TestClient(create_app(lm), raise_server_exceptions=False) as http:
        page = http.get("/ui/models")
        assert page.status_code == 200
        assert "Not available yet." in page.text and "loopml.registry" in page.text
        overview = http.get("/ui/")
        assert overview.status_code == 200 and "not available yet" in overview.text


def test_static_assets_are_served_locally(lm_sqlite: Loopml) -> None:
    with TestClient(create_app(lm_sqlite)) as http:
        plotly = http.get("/static/vendor/plotly.min.js")
        assert plotly.status_code == 200 and b"plotly.js" in plotly.content[:200]
        assert http.get("/static/vendor/htmx.min.js").status_code == 200
        assert http.get("/static/css/loopml.css").status_code == 200
        page = http.get("/ui/").text
        assert "cdn" not in page.lower()


def test_number_and_time_filters() -> None:
    from loopml.web.format import fmt_num, fmt_seconds, fmt_when

    assert fmt_num(1234567) == "1,234,567"
    assert fmt_num(0.123456789) == "0.1235"
    assert fmt_num(None) == "—"
    assert fmt_num(np.float64(2.0)) == "2"
    assert fmt_seconds(0.0123) == "12 ms"
    assert fmt_seconds(75) == "1m 15s"
    assert fmt_when("2024-05-01T12:03:04+02:00") == "2024-05-01 10:03:04 UTC"
