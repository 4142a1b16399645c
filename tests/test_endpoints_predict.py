"""HTTP data plane: POST /v1/endpoints/{name}/predict and /feedback, GET .../status, /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.serving.app import create_app
from loopml.serving.endpoints import EndpointSpec, Fallback, Single

EXAMPLE = pd.DataFrame({"x": [0.5, 1.0, 2.0], "y": [1.0, 0.0, 3.0]})


class Doubler:
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return 2.0 * X["x"].to_numpy() + X["y"].to_numpy()


def endpoints(lm: Loopml) -> Any:
    found = getattr(lm, "endpoints", None)
    if found is not None:
        return found
    from loopml.serving.endpoints.service import Endpoints

    return Endpoints(lm.ctx)


def _setup(lm: Loopml, **spec: Any) -> None:
    lm.registry.register("m", Doubler(), flavor="python", input_example=EXAMPLE)
    endpoints(lm).create(EndpointSpec("demand", Single("m"), **spec))


@pytest.fixture
def client(lm_sqlite: Loopml) -> Iterator[TestClient]:
    _setup(lm_sqlite, max_batch_rows=5)
    with TestClient(create_app(lm_sqlite, apps=())) as c:
        yield c


def _feedback_until_logged(client: TestClient, body: dict[str, Any]) -> Any:
    """Feedback right after predict waits for the log writer's flush (S-log waits ~1 s locally)."""
    return client.post("/v1/endpoints/demand/feedback", json=body)


def test_predict_one_row_and_many_rows(client: TestClient) -> None:
    r = client.post("/v1/endpoints/demand/predict", json={"row": {"x": 1.0, "y": 0.5}, "request_id": "req-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"] == [2.5] and body["request_id"] == "req-1"
    assert (body["endpoint"], body["model"], body["version"], body["arm"], body["status"]) == (
        "demand",
        "m",
        1,
        "primary",
        "ok",
    )
    assert body["latency_ms"] > 0
    r = client.post("/v1/endpoints/demand/predict", json={"rows": [{"x": 1, "y": 0}, {"x": 2.0, "y": 1.0}]})
    assert r.json()["outputs"] == [2.0, 5.0] and len(r.json()["request_id"]) == 32


BAD_BODIES = [
    (b"{not json", 422, "body", "not valid JSON"),
    (b'{"row": {"x": NaN, "y": 1}}', 422, "body", "NaN and Infinity"),
    (b"", 422, "body", "empty"),
    (b"[1, 2]", 422, "body", "JSON object"),
    (b'{"rows": {"x": 1}}', 422, "rows", "must be a list"),
    (b'{"inputs": []}', 422, "inputs", "unknown field"),
    (b'{"rows": []}', 422, "rows", "rows is empty"),
    (b'{"rows": [{"x": 1.0}]}', 422, "rows[0].y", "'y' is missing"),
    (b'{"rows": [{"x": 1.0, "y": 1, "z": 0}]}', 422, None, "'z' is not in the model signature"),
    (b'{"row": {"x": "big", "y": 1}}', 422, "rows[0].x", "'x' expects float"),
    (b'{"row": {"x": 1e999, "y": 1}}', 422, "body", "infinity"),
    (b'{"row": {"x": [1, 2], "y": 1}}', 422, "rows[0].x", "is a list"),
    (b'{"row": {"x": {"a": 1}, "y": 1}}', 422, None, "'x'"),
    (b'{"row": {"x": true, "y": 1}}', 422, None, "'x' expects float"),
    (b'{"row": {"x": null, "y": 1}}', 422, "rows[0].x", "'x' holds 1 NaN/null"),
    (b'{"rows": [{"x": 1, "y": 1}, {"x": 1}]}', 422, "rows[1].y", "rows[1]: column 'y' is missing"),
    (b'{"rows": [' + b",".join([b'{"x": 1, "y": 1}'] * 6) + b"]}", 422, "rows", "at most 5"),
    (b'{"row": {"x": 1, "y": 1}, "request_id": 5}', 422, "request_id", "request_id"),
    (b'{"row": {"x": 1, "y": 1}, "routing_key": [1]}', 422, "routing_key", "routing_key"),
]


def test_bad_predict_bodies_are_4xx_naming_the_field(client: TestClient) -> None:
    for body, status, field, needle in BAD_BODIES:
        r = client.post(
            "/v1/endpoints/demand/predict", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == status, (body, r.text)
        err = r.json()
        assert needle in err["detail"], (body, err)
        if field is not None:
            assert err["field"] == field, (body, err)
    # nothing above tripped the circuit or reached the log as a model failure
    assert (
        client.get("/v1/endpoints/demand/status").json()["arms"]["primary"]["breaker"]["consecutive_failures"]
        == 0
    )


def test_unknown_endpoint_is_404_with_a_suggestion(client: TestClient) -> None:
    r = client.post("/v1/endpoints/demnd/predict", json={"row": {"x": 1, "y": 1}})
    assert r.status_code == 404 and "Did you mean: demand" in r.json()["detail"]
    assert client.get("/v1/endpoints/nope/status").status_code == 404


def test_feedback_attaches_labels_and_refuses_unknown_request_ids(client: TestClient) -> None:
    rid = client.post("/v1/endpoints/demand/predict", json={"row": {"x": 1, "y": 1}}).json()["request_id"]
    r = _feedback_until_logged(client, {"request_id": rid, "label": 1})
    assert r.status_code == 200, r.text
    assert r.json()["feedback"][0]["label"] == 1
    r = client.post("/v1/endpoints/demand/feedback", json={"items": [{"request_id": rid, "reward": 0.5}]})
    assert r.status_code == 200 and r.json()["feedback"][0]["reward"] == 0.5
    r = client.post("/v1/endpoints/demand/feedback", json={"request_id": "no-such-request", "label": 0})
    assert r.status_code == 404 and "no-such-request" in r.json()["detail"]
    for body, field in [
        ({"label": 1}, "request_id"),
        ({"request_id": rid}, "label"),
        ({"request_id": rid, "label": 1, "score": 2}, "score"),
        ({"items": []}, "items"),
        ({"items": [{"request_id": rid, "label": 1}], "label": 2}, "label"),
    ]:
        r = client.post("/v1/endpoints/demand/feedback", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field
    r = client.post(
        "/v1/endpoints/demand/feedback",
        content=b'{"request_id": "x", "reward": Infinity}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_status_and_metrics_show_the_endpoint(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/endpoints/demand/predict", json={"row": {"x": 1, "y": 1}}).status_code == 200
    status = client.get("/v1/endpoints/demand/status").json()
    arm = status["arms"]["primary"]
    assert (arm["version"], arm["loaded"], arm["circuit"], arm["state"]) == (2 - 1, True, "closed", "ok")
    text = client.get("/metrics").text
    assert (
        'loopml_endpoint_predictions_total{arm="primary",endpoint="demand",status="ok",version="m/1"} 3.0'
        in text
    )
    assert 'loopml_endpoint_circuit_state{arm="primary",endpoint="demand",version="m/1"} 0.0' in text
    assert "loopml_endpoint_predict_duration_seconds_bucket" in text


def test_policy_change_is_served_without_restart(lm_sqlite: Loopml) -> None:
    _setup(lm_sqlite, fallback=Fallback(0.0))
    with TestClient(create_app(lm_sqlite, apps=())) as c:
        assert c.post("/v1/endpoints/demand/predict", json={"row": {"x": 1, "y": 0}}).json()["version"] == 1
        lm_sqlite.registry.register("m", Doubler(), flavor="python", input_example=EXAMPLE)
        c.put("/v1/endpoints/demand/policy", json={"kind": "single", "model": "m/2"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = c.post("/v1/endpoints/demand/predict", json={"row": {"x": 1, "y": 0}}).json()
            if got["version"] == 2:
                break
            time.sleep(0.05)
        assert got["version"] == 2 and got["status"] == "ok"


def test_predict_and_feedback_on_both_backends(lm: Loopml) -> None:
    """Smoke test on SQLite and PostgreSQL: the runtime, the log and feedback through HTTP."""
    _setup(lm)
    with TestClient(create_app(lm, apps=())) as c:
        r = c.post("/v1/endpoints/demand/predict", json={"row": {"x": 2, "y": 1}, "request_id": "pg-1"})
        assert r.status_code == 200 and r.json()["outputs"] == [5.0]
        r = c.post("/v1/endpoints/demand/feedback", json={"request_id": "pg-1", "label": 5.0})
        assert r.status_code == 200, r.text
