"""The HTTP app on SQLite and PostgreSQL: health, metrics, error shape, bearer token, admin routers."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml import Loopml, load_settings
from loopml.serving.app import create_app
from loopml.serving.auth import check_bearer
from loopml.serving.errors import AuthenticationError, error_code, field_from_message


@pytest.fixture
def client(lm: Loopml) -> Iterator[TestClient]:
    with TestClient(create_app(lm), raise_server_exceptions=False) as http:
        yield http


def token_client(lm: Loopml, token: str) -> TestClient:
    lm.settings.api_token = token
    return TestClient(create_app(lm), raise_server_exceptions=False)


def test_healthz_reports_each_backend(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["backends"]["metadata"]["ok"] is True
    assert "schema" in body["backends"]["metadata"]["detail"]
    assert body["backends"]["artifacts"]["ok"] is True


def test_healthz_is_503_when_the_metadata_database_is_down(tmp_path) -> None:
    settings = load_settings(
        home=tmp_path / "home", metadata_url="postgresql+psycopg://postgres@127.0.0.1:1/nope"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        response = http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["backends"]["metadata"]["ok"] is False
    assert "127.0.0.1:1" in body["backends"]["metadata"]["detail"]
    assert body["backends"]["artifacts"]["ok"] is True


def test_metrics_count_requests_by_route_template(client: TestClient, lm: Loopml) -> None:
    lm.jobs.enqueue("demo.kind", {"n": 1})
    client.get("/v1/jobs/123456")
    client.get("/v1/jobs/987654")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'loopml_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 2.0' in text
    assert 'route="<unmatched>"' in text
    assert "/no/such/route" not in text
    assert (
        'loopml_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/jobs/{job_id}"}' in text
    )
    assert 'loopml_jobs{status="queued"} 1.0' in text


def test_openapi_lists_admin_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/healthz",
        "/metrics",
        "/v1/datasets",
        "/v1/jobs",
        "/v1/runs/{run_id}",
        "/v1/models/{name}/promote",
    ):
        assert path in spec["paths"], path
    assert not any(p.startswith("/ui") for p in spec["paths"])


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert "/openapi.json" in missing.json()["detail"]
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


def test_request_validation_names_the_field(client: TestClient) -> None:
    response = client.get("/v1/jobs", params={"limit": "lots"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation"
    assert body["field"] == "limit"
    assert "limit (query)" in body["detail"] and "'lots'" in body["detail"]


def test_loopml_errors_keep_their_status_and_name_the_field(client: TestClient) -> None:
    response = client.get("/v1/jobs", params={"status": "exploded"})
    assert response.status_code == 422
    assert response.json()["field"] == "status"
    missing = client.get("/v1/jobs/424242")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert "424242" in missing.json()["detail"]


def test_mutating_routes_need_the_bearer_token(lm: Loopml) -> None:
    job = lm.jobs.enqueue("demo.kind", {})
    with token_client(lm, "s3cret") as http:
        no_header = http.post(f"/v1/jobs/{job.id}/cancel")
        assert no_header.status_code == 401
        assert no_header.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in no_header.json()["detail"]
        wrong = http.post(f"/v1/jobs/{job.id}/cancel", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]
        basic = http.post(f"/v1/jobs/{job.id}/cancel", headers={"Authorization": "Basic czNjcmV0"})
        assert basic.status_code == 401 and "'Basic'" in basic.json()["detail"]
        assert http.get("/v1/jobs").status_code == 200  # reads stay open
        ok = http.post(
            f"/v1/jobs/{job.id}/cancel",
            headers={"Authorization": "Bearer s3cret", "X-Loopml-Actor": "ops-bot"},
            json={"reason": "not needed"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "cancelled"
    assert lm.jobs.get(job.id).status == "cancelled"


def test_without_a_token_mutating_routes_are_open(client: TestClient, lm: Loopml) -> None:
    job = lm.jobs.enqueue("demo.kind", {})
    response = client.post(f"/v1/jobs/{job.id}/cancel", json={"reason": "cleanup"})
    assert response.status_code == 200
    requeued = client.post(f"/v1/jobs/{job.id}/requeue", json={"reasn": "typo"})
    assert requeued.status_code == 422 and requeued.json()["field"] == "reasn"


def test_check_bearer_unit() -> None:
    check_bearer(None, None)
    check_bearer("Bearer abc", "abc")
    check_bearer("bearer  abc ", "abc")
    for header in (None, "", "Bearer", "Bearer abd", "Token abc"):
        with pytest.raises(AuthenticationError):
            check_bearer(header, "abc")


def test_error_helpers() -> None:
    assert error_code(AuthenticationError("x")) == "authentication"
    assert field_from_message("limit=0: use an int >= 1") == "limit"
    assert field_from_message("--port 0 is wrong") is None


def test_jobs_routes(client: TestClient, lm: Loopml) -> None:
    job = lm.jobs.enqueue("demo.kind", {"x": 1})
    listed = client.get("/v1/jobs", params={"kind": "demo.kind"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job.id]
    stats = client.get("/v1/jobs/stats").json()
    assert stats["counts"]["queued"] == 1
    assert stats["oldest_queued_age_seconds"] >= 0
    assert client.get(f"/v1/jobs/{job.id}").json()["payload"] == {"x": 1}
    conflict = client.post(f"/v1/jobs/{job.id}/requeue")
    assert conflict.status_code == 409


CSV = "store,visits\n1,10\n2,-5\n3,30\n"


def test_dataset_upload_quarantine_and_versions(client: TestClient, lm: Loopml) -> None:
    from loopml.data import Column, Contract

    lm.datasets.define(
        "visits",
        Contract(columns=[Column("store", "int"), Column("visits", "int", min=0)], max_bad_share=0.5),
    )
    upload = client.post(
        "/v1/datasets/visits/ingest", files={"file": ("day1.csv", io.BytesIO(CSV.encode()), "text/csv")}
    )
    assert upload.status_code == 201, upload.text
    body = upload.json()
    assert (body["rows_in"], body["rows_ok"], body["rows_quarantined"]) == (3, 2, 1)
    assert client.get("/v1/datasets").json()["datasets"][0]["name"] == "visits"
    version = client.get("/v1/datasets/visits/versions/latest").json()
    assert version["number"] == 1 and version["row_count"] == 2
    rows = client.get("/v1/datasets/visits/quarantine").json()["rows"]
    assert [r["row_index"] for r in rows] == [1]
    assert rows[0]["failed_checks"][0]["column"] == "visits"
    assert client.get("/v1/datasets/visits/versions/zero").json()["field"] == "version"
    bad_name = client.get("/v1/datasets/visit")
    assert bad_name.status_code == 404 and "visits" in bad_name.json()["detail"]
    wrong_type = client.post(
        "/v1/datasets/visits/ingest", files={"file": ("x.xlsx", b"abc", "application/octet-stream")}
    )
    assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "file"
    no_file = client.post("/v1/datasets/visits/ingest")
    assert no_file.status_code == 422 and no_file.json()["field"] == "file"


def test_runs_routes(client: TestClient, lm: Loopml) -> None:
    ids = []
    for lr in (0.1, 0.2):
        with lm.tracking.start_run("churn", params={"lr": lr}) as run:
            run.log_metrics({"loss": 1.0}, step=0)
            run.log_metrics({"loss": 0.5 * lr}, step=1)
            ids.append(run.id)
    lm.tracking.flush()
    listed = client.get("/v1/runs", params={"experiment": "churn"}).json()["runs"]
    assert {r["id"] for r in listed} == set(ids)
    one = client.get(f"/v1/runs/{ids[0]}").json()
    assert one["params"] == {"lr": "0.1"}
    points = client.get(f"/v1/runs/{ids[0]}/metrics/loss").json()["points"]
    assert [p["step"] for p in points] == [0, 1]
    compared = client.get("/v1/runs/compare", params={"ids": ids})
    assert compared.status_code == 200, compared.text
    assert client.get("/v1/runs/compare", params={"ids": ids[:1]}).json()["field"] == "ids"
    assert client.get("/v1/runs/notarun").status_code == 404


def test_a_missing_module_answers_501_not_a_crash(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Loopml) -> None:
        raise ImportError("No module named 'loopml.registry'")

    monkeypatch.setattr(Loopml, "registry", property(broken), raising=False)
    response = client.get("/v1/models")
    assert response.status_code == 501
    assert response.json()["error"] == "module_unavailable"
    assert "loopml.registry" in response.json()["detail"]


def test_to_jsonable_handles_service_values() -> None:
    import numpy as np

    from loopml.serving.api.responses import to_jsonable

    frame = pd.DataFrame({"a": [1, 2], "b": [np.nan, 1.5]})
    assert to_jsonable({"f": frame, "n": np.int64(3), "x": float("inf")}) == {
        "f": [{"a": 1, "b": None}, {"a": 2, "b": 1.5}],
        "n": 3,
        "x": None,
    }
