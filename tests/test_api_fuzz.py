"""Property-based fuzzing of the whole HTTP surface with schemathesis: no input may cause a 5xx.

Every operation of the OpenAPI schema (``/v1/...``, ``/healthz``, ``/metrics``, and the ``/ui/...``
pages, which this test adds to its own copy of the schema) gets schema-valid and schema-violating
requests, with random path parameters and with the names of real records, against an app over
real data. Each response must be below 500 and must not crash the app; 4xx errors must name the
field. Generation is derandomised and bounded (no shrinking), so the run is reproducible and fast.

The endpoint routes (``/v1/endpoints/...``: admin, predict, feedback, status) get their own run on an
app with a real endpoint ``fraud`` over a registered model whose columns match the schema's predict
example, so the explicit examples reach the model and the mutations start from valid requests. The
endpoint is put back before each operation: the fuzzer may delete it or give it a policy or a timeout
that the next operation's requests should not depend on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.serving.app import create_app

#: Examples per operation and generation pass; 3 passes per operation (positive, negative, real names).
MAX_EXAMPLES = 15
SKIP_REASON = (
    "schemathesis>=4 is not installed (a dev/test-only dependency): pip install 'schemathesis>=4,<5'"
)
BIG = 2**70  # past a SQL BIGINT: used to make SQLite's driver raise OverflowError (a 500) before the fix
#: The endpoint routes, fuzzed in their own run against a real endpoint.
ENDPOINT_PATHS = ("/v1/endpoints",)
#: Names the OpenAPI examples of the endpoint routes use (``fraud@champion``, ``fraud/4``, rows with
#: ``amount`` and ``hour``): with them real, the explicit phase sends requests that succeed.
ENDPOINT = "fraud"
ENDPOINT_MODEL = "fraud"


def fuzz_settings():  # hypothesis ships with schemathesis, so it is imported only once that is known to exist
    from hypothesis import HealthCheck, Phase, settings

    return settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not minimised
        suppress_health_check=list(HealthCheck),
    )


#: 4xx errors about the request as a whole, or a record that does not exist, need not name a field.
UNNAMED_FIELD_ERRORS = ("not_found", "method_not_allowed", "conflict", "authentication")


def populate(lm: Loopml) -> dict[str, str]:
    """A dataset (with a quarantined row), a tracked run, a registered model with an alias, a job."""
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"x": [1, 2, 3, 4, 5, 6, 7, 8, 9, "bad"]})
    contract = {"columns": [{"name": "x", "dtype": "int"}], "max_bad_share": 0.5}
    lm.datasets.ingest("fuzz_ds", frame, contract=contract)
    lm.datasets.ingest("fuzz_ds", frame.head(5), contract=contract)
    with lm.tracking.start_run("fuzz_exp", name="fuzz-run", params={"alpha": 0.1}) as run:
        for i in range(3):
            run.log_metric("rmse", 1.0 / (i + 1), step=i)
        run_id = run.id
    with lm.tracking.start_run("fuzz_exp", name="fuzz-run-2", params={"alpha": 0.2}) as run2:
        run2.log_metric("rmse", 0.5)
        run2_id = run2.id
    lm.tracking.flush()
    features = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    model = LinearRegression().fit(features, [2.0, 4.0, 6.0, 8.0])
    lm.registry.register("fuzz_model", model, input_example=features.head(2), run_id=run_id)
    lm.registry.register("fuzz_model", model, input_example=features.head(2), run_id=run_id)
    lm.registry.set_alias("fuzz_model", "champion", 1, actor="test", reason="first")
    job = lm.jobs.enqueue("fuzz.kind", {"n": 1})
    return {
        "name": "fuzz_model",
        "dataset": "fuzz_ds",
        "version": "1",
        "alias": "champion",
        "run_id": run_id,
        "run2_id": run2_id,
        "key": "rmse",
        "job_id": str(job.id),
    }


def real_path_parameters(path: str, real: dict[str, str]) -> dict[str, str]:
    """Path parameters naming records that exist, so the fuzzer gets past the 404 on the name."""
    params = {k: v for k, v in real.items() if "{" + k + "}" in path}
    if "{name}" in path and path.startswith(("/v1/datasets", "/ui/datasets")):
        params["name"] = real["dataset"]
    return params


def fuzz_app(lm: Loopml) -> FastAPI:
    """The app, whose ``/openapi.json`` also lists the dashboard pages (hidden from the real schema)."""
    from loopml.web.routes import router as ui_router

    app = create_app(lm)
    pages = FastAPI()
    for route in ui_router.routes:
        if isinstance(route, APIRoute):
            pages.add_api_route(
                route.path, route.endpoint, methods=sorted(route.methods), include_in_schema=True
            )
    spec = app.openapi()
    merged = {**spec, "paths": {**spec["paths"], **pages.openapi()["paths"]}}
    app.openapi = lambda: merged  # type: ignore[method-assign]
    return app


def endpoint_spec() -> Any:
    """The endpoint the fuzzer starts each operation from: a generous timeout (a loaded CI machine must
    not turn a slow predict into a 503), a small batch limit (so oversized batches are cheap to send)."""
    from loopml.serving.endpoints import EndpointSpec, Single

    return EndpointSpec(
        ENDPOINT, Single(f"{ENDPOINT_MODEL}@champion"), timeout_ms=10_000.0, max_batch_rows=50
    )


def endpoints_of(lm: Loopml) -> Any:
    from loopml.serving.endpoints import Endpoints

    return lm.endpoints if hasattr(type(lm), "endpoints") else Endpoints(lm.ctx)


def populate_endpoint(lm: Loopml) -> dict[str, str]:
    """Model ``fraud`` (4 versions, so the examples' ``fraud/4`` resolves) and endpoint ``fraud`` on it."""
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"amount": [1.0, 5.0, 12.5, 80.0, 300.0, 950.0], "hour": [9, 14, 3, 22, 2, 4]})
    model = LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1])
    for _ in range(4):
        lm.registry.register(ENDPOINT_MODEL, model, input_example=frame.head(2))
    lm.registry.set_alias(ENDPOINT_MODEL, "champion", 1, actor="test", reason="fuzz baseline")
    endpoints_of(lm).create(endpoint_spec(), actor="test")
    return {"name": ENDPOINT}


def reset_endpoint(lm: Loopml, app: FastAPI) -> None:
    """Put endpoint ``fraud`` back to its starting spec and make this process's runtime see it now."""
    from loopml.errors import NotFoundError

    endpoints = endpoints_of(lm)
    spec = endpoint_spec()
    try:
        if endpoints.get(ENDPOINT).spec != spec:
            endpoints.update(ENDPOINT, spec, actor="test", reason="fuzz reset")
    except NotFoundError:
        endpoints.create(spec, actor="test")
    lm.registry.set_alias(ENDPOINT_MODEL, "champion", 1, actor="test", reason="fuzz reset")
    runtime = getattr(app.state, "endpoint_runtime", None)
    if runtime is not None:
        runtime.refresh(force=True)


def stop_endpoint_runtime(app: FastAPI) -> None:
    """Stop the runtime a predict started lazily (watcher thread, model pool, log writer)."""
    from loopml.serving.endpoints.predict_api import stop_runtime

    stop_runtime(app)


def fuzz_operations(
    schema: Any, operations: list[Any], real: dict[str, str], before: Callable[[Any], None] | None = None
) -> dict[str, str]:
    """Run every operation's generation passes; one example per (operation, outcome) that failed."""
    import schemathesis
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    settings = fuzz_settings()
    failures: dict[str, str] = {}  # one example per (operation, outcome), so the report stays short

    def exercise(case: Any) -> None:
        where = f"{case.method} {case.path}"
        try:
            response = case.call()
        except Exception as exc:  # the app crashed instead of answering
            failures.setdefault(f"{where} crashed: {type(exc).__name__}", f"{case.formatted_path}: {exc}")
            return
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError:  # schemathesis reports check failures as AssertionError subclasses
            failures.setdefault(
                f"{where} -> {response.status_code}", f"{case.formatted_path}: {response.text[:300]}"
            )
            return
        if 400 <= response.status_code < 500 and case.path.startswith("/v1/"):
            body = response.json()
            if not body.get("field") and body.get("error") not in UNNAMED_FIELD_ERRORS:
                failures.setdefault(
                    f"{where} -> {response.status_code} {body.get('error')} names no field",
                    f"{case.formatted_path}: {body.get('detail')}",
                )

    for operation in operations:
        if before is not None:
            before(operation)
        passes = [
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        ]
        fixed = real_path_parameters(operation.path, real)
        if fixed:
            passes.append(operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=fixed))
        for strategy in passes:
            with contextlib.suppress(Unsatisfiable):  # negative mode on an operation without inputs
                settings(given(case=strategy)(exercise))()
    return failures


def failure_report(failures: dict[str, str]) -> str:
    report = "\n".join(f"{key}\n    e.g. {example}" for key, example in sorted(failures.items()))
    return f"{len(failures)} kinds of server error / unnamed 4xx:\n{report}"


def test_no_request_causes_a_server_error(lm_sqlite: Loopml) -> None:
    schemathesis = pytest.importorskip("schemathesis", minversion="4", reason=SKIP_REASON)

    real = populate(lm_sqlite)
    app = fuzz_app(lm_sqlite)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/datasets/{name}/ingest", "/healthz", "/metrics", "/ui/models/{name}"} <= paths
    # the endpoint routes are fuzzed below, against a real endpoint
    operations = [op for op in operations if not op.path.startswith(ENDPOINT_PATHS)]

    failures = fuzz_operations(schema, operations, real)
    assert not failures, failure_report(failures)
    with TestClient(app) as http:  # the app still answers after the barrage
        assert http.get("/healthz").status_code == 200


def test_endpoint_routes_cause_no_server_error(lm_sqlite: Loopml) -> None:
    """Admin, predict, feedback and status routes against a real endpoint: no 5xx, every 4xx names a field."""
    schemathesis = pytest.importorskip("schemathesis", minversion="4", reason=SKIP_REASON)
    pytest.importorskip(
        "loopml.serving.endpoints.predict_api", reason="the endpoint runtime is not installed"
    )

    real = populate_endpoint(lm_sqlite)
    app = create_app(lm_sqlite)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [
        op for op in (r.ok() for r in schema.get_all_operations()) if op.path.startswith(ENDPOINT_PATHS)
    ]
    paths = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {
        "POST /v1/endpoints",
        "PUT /v1/endpoints/{name}/policy",
        "DELETE /v1/endpoints/{name}",
        "POST /v1/endpoints/{name}/predict",
        "POST /v1/endpoints/{name}/feedback",
        "GET /v1/endpoints/{name}/status",
    } <= paths
    try:
        failures = fuzz_operations(
            schema, operations, real, before=lambda _op: reset_endpoint(lm_sqlite, app)
        )
        assert not failures, failure_report(failures)
        reset_endpoint(lm_sqlite, app)
        with TestClient(app) as http:  # the endpoint still serves after the barrage
            response = http.post(
                f"/v1/endpoints/{ENDPOINT}/predict", json={"row": {"amount": 900.0, "hour": 3}}
            )
            assert response.status_code == 200, response.text
            assert response.json()["version"] == 1
    finally:
        stop_endpoint_runtime(app)


def test_endpoint_bad_input_names_the_field(lm_sqlite: Loopml) -> None:
    """The issue's bad-input list on the data plane, plus what the fuzzer found, pinned."""
    pytest.importorskip(
        "loopml.serving.endpoints.predict_api", reason="the endpoint runtime is not installed"
    )
    populate_endpoint(lm_sqlite)
    app = create_app(lm_sqlite)
    url = f"/v1/endpoints/{ENDPOINT}"
    json_header = {"content-type": "application/json"}
    try:
        with TestClient(app, raise_server_exceptions=False) as http:

            def expect(response: Any, status: int, field: str) -> None:
                assert response.status_code == status, response.text
                body = response.json()
                assert body["field"] == field, body

            ok = http.post(f"{url}/predict", json={"rows": [{"amount": 12.5, "hour": 3}]})
            assert ok.status_code == 200, ok.text
            expect(http.post(f"{url}/predict", content=b"{not json", headers=json_header), 422, "body")
            expect(
                http.post(
                    f"{url}/predict", content=b'{"row": {"amount": NaN, "hour": 3}}', headers=json_header
                ),
                422,
                "body",
            )
            expect(
                http.post(f"{url}/predict", json={"row": {"amount": "x", "hour": 3}}), 422, "rows[0].amount"
            )
            expect(http.post(f"{url}/predict", json={"row": {"amount": 1.0}}), 422, "rows[0].hour")
            extra = {"row": {"amount": 1.0, "hour": 1, "zzz": 2}}
            expect(http.post(f"{url}/predict", json=extra), 422, "rows[0].zzz")
            expect(http.post(f"{url}/predict", json={"rows": [{"amount": 1.0, "hour": 1}] * 51}), 422, "rows")
            expect(
                http.post("/v1/endpoints/nope/predict", json={"row": {"amount": 1.0, "hour": 1}}), 404, "name"
            )
            expect(
                http.post(f"{url}/feedback", json={"request_id": "never-issued", "label": 1}),
                404,
                "request_id",
            )
            # an empty key used to be refused with field "" (an error that names nothing)
            empty_key = http.post(f"{url}/predict", json={"rows": [{"amount": 1.0, "hour": 1}], "": 1})
            assert empty_key.status_code == 422 and empty_key.json()["field"], empty_key.text
            feedback = http.post(f"{url}/feedback", json={"request_id": ok.json()["request_id"], "label": 1})
            assert feedback.status_code == 200, feedback.text
    finally:
        stop_endpoint_runtime(app)


def test_fuzz_findings_stay_fixed(lm_sqlite: Loopml) -> None:
    """What the fuzzer found, pinned: each was a 500 (or a 4xx naming no field) before the fix."""
    populate(lm_sqlite)
    with TestClient(create_app(lm_sqlite), raise_server_exceptions=False) as http:

        def expect(response: Any, status: int, field: str) -> None:
            assert response.status_code == status, response.text
            body = response.json()
            assert body["field"] == field, body
            assert field in body["detail"], body

        # ids and version numbers past a BIGINT used to reach the driver and raise OverflowError (500)
        expect(http.get(f"/v1/jobs/{BIG}"), 422, "job_id")
        expect(http.post(f"/v1/jobs/{BIG}/cancel"), 422, "job_id")
        expect(http.post(f"/v1/jobs/{-BIG}/requeue"), 422, "job_id")
        expect(http.get("/v1/datasets/fuzz_ds/quarantine", params={"version": BIG}), 422, "version")
        expect(http.get("/v1/datasets/fuzz_ds/diff", params={"a": 1, "b": BIG}), 422, "b")
        expect(http.get(f"/v1/datasets/fuzz_ds/versions/{BIG}"), 422, "version")
        expect(http.get(f"/v1/models/fuzz_model/versions/{BIG}/gates"), 422, "version")
        expect(
            http.post("/v1/models/fuzz_model/aliases/champion", json={"version": BIG, "reason": "r"}),
            422,
            "version",
        )
        expect(
            http.post("/v1/models/fuzz_model/promote", json={"version": BIG, "reason": "r"}), 422, "version"
        )
        page = http.get("/ui/datasets/fuzz_ds", params={"version": BIG})
        assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
        assert "version" in page.text

        # domain validation errors now name the input at fault
        expect(http.get("/v1/models/%C2%B2"), 422, "name")
        expect(http.get("/v1/models/%C2%B2/history"), 422, "name")
        expect(
            http.post("/v1/models/fuzz_model/aliases/Not%20An%20Alias", json={"version": 1, "reason": "r"}),
            422,
            "alias",
        )
        expect(
            http.post("/v1/models/fuzz_model/aliases/champion/rollback", json={"reason": "  "}), 422, "reason"
        )
        upload = {"file": ("x.csv", b"x\n1\n", "text/csv")}
        expect(http.post("/v1/datasets/%C2%B2/ingest", files=upload), 422, "name")

        # bodies that cannot be read name the body instead of answering {"field": null} or {"field": "0"}
        json_header = {"content-type": "application/json"}
        expect(http.post("/v1/jobs/1/cancel", content=b"\x80abc", headers=json_header), 400, "body")
        expect(http.post("/v1/jobs/1/cancel", content=b"{not json", headers=json_header), 422, "body")
