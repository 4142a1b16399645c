"""Pipelines: DAG from signatures, artifacts, cache, retries, logs, params, run records (both backends)."""

from __future__ import annotations

import logging
import typing
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.pipelines import Pipeline, pipeline, register, step
from loopml.pipelines.definition import code_hash

calls: Counter[str] = Counter()
flaky_failures: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    flaky_failures.clear()


@step
def load(rows: int) -> pd.DataFrame:
    calls["load"] += 1
    print(f"loading {rows} rows")
    return pd.DataFrame({"x": np.arange(rows, dtype="float64"), "y": np.arange(rows) * 2.0})


@step
def features(load: pd.DataFrame, scale: float) -> np.ndarray:
    calls["features"] += 1
    logging.getLogger("test.features").info("scaling by %s", scale)
    return load[["x"]].to_numpy() * scale


@step
def summary(load: pd.DataFrame) -> dict:
    calls["summary"] += 1
    return {"rows": len(load), "mean_y": float(load["y"].mean())}


@step(cache=False)
def report(summary: dict, features: np.ndarray, label: str = "weekly") -> tuple:
    calls["report"] += 1
    return (label, summary["rows"], float(features.sum()))


@pipeline("tp-demo", params={"rows": 5, "scale": 2.0})
def demo() -> list:
    """A four-step DAG: load -> (features, summary) -> report."""
    return [report, summary, features, load]  # order given does not matter


# -- definitions ------------------------------------------------------------------------------
def test_dag_order_comes_from_signatures() -> None:
    # dependencies first; otherwise the order the steps were listed in
    assert demo.step_names == ("load", "summary", "features", "report")
    assert demo.upstream == {
        "load": (),
        "features": ("load",),
        "summary": ("load",),
        "report": ("summary", "features"),
    }


def test_definition_errors_name_the_problem() -> None:
    @step
    def orphan(missing_input: int) -> int:
        return missing_input

    with pytest.raises(ValidationError, match="parameter 'missing_input' is neither a step"):
        Pipeline("tp-bad", [orphan])

    @step(name="a")
    def a(b: int) -> int:
        return b

    @step(name="b")
    def b(a: int) -> int:
        return a

    with pytest.raises(ValidationError, match="cycle"):
        Pipeline("tp-cycle", [a, b])
    with pytest.raises(ValidationError, match="two steps named"):
        Pipeline("tp-dup", [load, load], params={"rows": 1})
    with pytest.raises(ValidationError, match="not a step"):
        Pipeline("tp-plain", [lambda: 1])
    with pytest.raises(ValidationError, match="no steps"):
        Pipeline("tp-empty", [])
    with pytest.raises(ValidationError, match="cron"):
        Pipeline("tp-cron", [load], params={"rows": 1}, schedule="every tuesday")
    with pytest.raises(ValidationError, match="pipeline name"):
        Pipeline("bad name!", [load], params={"rows": 1})
    with pytest.raises(ValidationError, match="retries"):
        step(retries=-1)
    with pytest.raises(ValidationError, match="named parameters only"):

        @step
        def star(*args: int) -> int:
            return 0


def test_same_name_from_another_module_conflicts() -> None:
    other = Pipeline("tp-demo", [load], params={"rows": 1})
    with pytest.raises(ConflictError, match="pipeline names must be unique"):
        register(other, module="somewhere.else")


def test_code_hash_ignores_decorators_comments_and_docstrings() -> None:
    def f1(x: int) -> int:
        return x + 1

    def f2(x: int) -> int:
        """Docs."""
        # a comment
        return x + 1

    def f3(x: int) -> int:
        return x + 2

    assert code_hash(f1) == code_hash(f2)
    assert code_hash(f1) != code_hash(f3)


# -- running ----------------------------------------------------------------------------------
def test_run_records_steps_outputs_formats_and_logs(lm: Loopml) -> None:
    seen = []
    run = lm.pipelines.run("tp-demo", on_step=lambda s: seen.append((s.step, s.status)))
    assert run.status == "succeeded", run.error
    assert run.trigger == "manual" and run.params == {"rows": 5, "scale": 2.0}
    assert [s.step for s in run.steps] == ["load", "summary", "features", "report"]
    assert [s.status for s in run.steps] == ["succeeded"] * 4
    assert {s.step: s.output_format for s in run.steps} == {
        "load": "parquet",
        "features": "npy",
        "summary": "json",
        "report": "pickle",
    }
    assert run.step("load").output_type == "pandas.DataFrame"
    assert "loading 5 rows" in run.step("load").log
    assert "scaling by 2.0" in run.step("features").log
    assert run.step("features").input_digests == {"load": run.step("load").output_digest}
    assert all(s.duration_seconds is not None and s.started_at and s.finished_at for s in run.steps)
    assert run.started_at and run.finished_at and run.duration_seconds >= 0
    # statuses were reported as they changed, in DAG order
    assert seen[0] == ("load", "running") and ("report", "succeeded") in seen
    assert lm.pipelines.output(run.id, "report") == ("weekly", 5, 20.0)
    pd.testing.assert_frame_equal(lm.pipelines.output(run.id, "load"), load(5))
    assert lm.pipelines.output(run.id, "summary") == {"rows": 5, "mean_y": 4.0}
    assert lm.pipelines.get_run(run.id).to_dict()["steps"][0]["step"] == "load"


def test_unchanged_inputs_are_skipped_and_changed_params_rerun_dependents(lm: Loopml) -> None:
    first = lm.pipelines.run("tp-demo")
    second = lm.pipelines.run("tp-demo")
    assert [s.label for s in second.steps] == [
        "skipped (cached)",
        "skipped (cached)",
        "skipped (cached)",
        "succeeded",  # cache=False: always runs
    ]
    assert second.step("load").cached_from == first.id
    assert second.step("load").output_digest == first.step("load").output_digest
    assert calls == Counter(load=1, features=1, summary=1, report=2)
    # scale feeds only `features` (and through it `report`): load and summary stay cached
    third = lm.pipelines.run("tp-demo", {"scale": 3.0})
    assert {s.step: s.status for s in third.steps} == {
        "load": "skipped",
        "features": "succeeded",
        "summary": "skipped",
        "report": "succeeded",
    }
    assert lm.pipelines.output(third.id, "report") == ("weekly", 5, 30.0)


def test_retries_then_success_and_failure_stops_only_dependents(lm: Loopml) -> None:
    @step(retries=2, backoff_seconds=0)
    def flaky(rows: int) -> int:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError(f"transient failure {calls['flaky']}")
        return rows

    @step(retries=1, backoff_seconds=0)
    def broken(flaky: int) -> int:
        raise ValueError("bad data in column x")

    @step
    def after(broken: int) -> int:
        return broken

    @step
    def independent(rows: int) -> int:
        return rows * 10

    pipe = Pipeline("tp-retry", [flaky, broken, after, independent], params={"rows": 4})
    run = lm.pipelines.run(pipe)
    assert run.status == "failed"
    assert run.step("flaky").status == "succeeded" and run.step("flaky").attempts == 3
    assert "transient failure 1" in run.step("flaky").log and "--- attempt 3 ---" in run.step("flaky").log
    assert run.step("broken").status == "failed" and run.step("broken").attempts == 2
    assert "ValueError: bad data in column x" in run.step("broken").error
    assert run.step("after").status == "upstream_failed"
    assert run.step("independent").status == "succeeded"
    assert "step 'broken' failed after 2 attempt(s): ValueError: bad data in column x" in run.error
    # a failed step is not cached: the next run executes it again
    rerun = lm.pipelines.run(pipe)
    assert rerun.step("flaky").status == "skipped" and rerun.step("broken").status == "failed"


def test_type_annotations_are_checked_and_not_retried(lm: Loopml) -> None:
    @step(retries=3, backoff_seconds=0)
    def liar(rows: int) -> pd.DataFrame:
        calls["liar"] += 1
        return rows  # type: ignore[return-value]

    run = lm.pipelines.run(Pipeline("tp-types", [liar], params={"rows": 1}))
    assert run.status == "failed"
    assert run.step("liar").attempts == 1 and calls["liar"] == 1
    assert "annotated to return DataFrame but returned int" in run.step("liar").error


def test_params_are_checked_against_the_defaults(lm: Loopml) -> None:
    with pytest.raises(ValidationError, match=r"no param 'scael'.*Did you mean: scale"):
        lm.pipelines.run("tp-demo", {"scael": 1.0})
    with pytest.raises(ValidationError, match="param 'rows'='many' is not an int"):
        lm.pipelines.run("tp-demo", {"rows": "many"})
    with pytest.raises(ValidationError, match="param 'rows'=True"):
        lm.pipelines.run("tp-demo", {"rows": True})
    with pytest.raises(ValidationError, match="params must be a dict"):
        lm.pipelines.run("tp-demo", ["rows"])  # type: ignore[arg-type]
    run = lm.pipelines.run("tp-demo", {"rows": "3", "scale": "1.5"})  # strings from the CLI are converted
    assert run.params == {"rows": 3, "scale": 1.5}
    assert lm.pipelines.runs("tp-demo", limit=10)[0].id == run.id


def test_unknown_names_are_not_found_with_hints(lm: Loopml) -> None:
    with pytest.raises(NotFoundError, match="Did you mean: tp-demo"):
        lm.pipelines.run("tp-dmeo")
    with pytest.raises(NotFoundError, match="does not exist"):
        lm.pipelines.get_run("0" * 32)
    run = lm.pipelines.run("tp-demo")
    with pytest.raises(NotFoundError, match="Did you mean: summary"):
        lm.pipelines.output(run.id, "sumary")
    with pytest.raises(ValidationError, match="limit"):
        lm.pipelines.runs(limit=0)
    with pytest.raises(ValidationError, match="status"):
        lm.pipelines.runs(status="done")


def test_list_and_get_describe_the_pipeline(lm: Loopml) -> None:
    lm.pipelines.run("tp-demo")
    info = lm.pipelines.get("tp-demo")
    assert [s.name for s in info.steps] == ["load", "summary", "features", "report"]
    assert info.steps[2].params == ("scale",) and info.steps[3].upstream == ("summary", "features")
    assert info.description.startswith("A four-step DAG") and info.last_status == "succeeded"
    assert "tp-demo" in [p.name for p in lm.pipelines.list()]
    assert info.to_dict()["steps"][0]["name"] == "load"


def test_steps_receive_the_client_and_run_id(lm: Loopml) -> None:
    """A step that names ``lm`` / ``pipeline_run_id`` gets the run's client and id, not a param."""

    @step
    def make(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": range(rows)})

    @step
    def store(make: pd.DataFrame, lm: Loopml, pipeline_run_id: str) -> dict:
        result = lm.datasets.ingest("injected", make, contract={"columns": [{"name": "x", "dtype": "int"}]})
        return {"version": result.version.number, "run": pipeline_run_id}

    pipe = Pipeline("inject", steps=[make, store], params={"rows": 3})
    run = lm.pipelines.run(pipe)
    assert run.status == "succeeded", run
    out = lm.pipelines.output(run.id, "store")
    assert out == {"version": 1, "run": run.id}
    assert len(lm.datasets.read("injected")) == 3
    with pytest.raises(ValidationError, match="reserved"):
        Pipeline("bad", steps=[make], params={"rows": 1, "lm": 2})


@step
def echo_any(value: typing.Any) -> dict:
    return {"value": value}


def test_a_param_annotated_any_accepts_anything(lm_sqlite: Loopml) -> None:
    """``typing.Any`` is a class since Python 3.11; the runner must not isinstance-check against it."""
    pipe = Pipeline("tp-any", [echo_any], params={"value": None})
    run = lm_sqlite.pipelines.run(pipe, {"value": "2026-12-01"})
    assert run.status == "succeeded", run.error
    assert lm_sqlite.pipelines.output(run.id, "echo_any") == {"value": "2026-12-01"}


@step
def return_any(value: typing.Any) -> typing.Any:
    return [value]


def test_a_step_returning_any_is_not_checked(lm_sqlite: Loopml) -> None:
    pipe = Pipeline("tp-any-out", [return_any], params={"value": 1})
    run = lm_sqlite.pipelines.run(pipe, {"value": 3})
    assert run.status == "succeeded", run.error
    assert lm_sqlite.pipelines.output(run.id, "return_any") == [3]
