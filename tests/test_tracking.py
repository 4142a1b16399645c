"""Tracking on both backends: buffered metrics, run lifecycle, compare, lineage and bad input."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from loopml import ConflictError, Loopml, NotFoundError, ValidationError
from loopml.storage.metadata import tracking as store
from loopml.tracking import Tracker


def _stored_points(lm: Loopml, run_id: str) -> int:
    with lm.ctx.db.session() as session:
        return store.count_metric_points(session, run_id)


def test_points_reach_the_database_only_at_flush_boundaries(lm: Loopml) -> None:
    tracker = Tracker(lm.ctx, flush_every=5, flush_interval=3600, record_git=False)
    run = tracker.start_run("batching")
    for i in range(4):
        run.log_metric("loss", 1.0 / (i + 1))
    assert _stored_points(lm, run.id) == 0, "points must stay buffered below the batch size"
    run.log_metric("loss", 0.1)
    assert _stored_points(lm, run.id) == 5, "the 5th point fills the batch and flushes all five at once"
    run.log_metrics({"acc": 0.5, "f1": 0.4})
    assert _stored_points(lm, run.id) == 5
    assert tracker.flush() == 2
    assert _stored_points(lm, run.id) == 7
    assert tracker._writer.batches_written == 2
    run.end()
    tracker.close()


def test_background_timer_flushes_a_slow_loop(lm: Loopml) -> None:
    tracker = Tracker(lm.ctx, flush_every=10_000, flush_interval=0.05, record_git=False)
    run = tracker.start_run("timer")
    run.log_metric("loss", 0.5)
    deadline = time.monotonic() + 10
    while _stored_points(lm, run.id) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stored_points(lm, run.id) == 1
    run.end()
    tracker.close()


def test_exception_marks_the_run_failed_and_keeps_every_point(lm: Loopml) -> None:
    tracker = Tracker(lm.ctx, flush_every=1000, flush_interval=3600, record_git=False)
    with pytest.raises(RuntimeError, match="diverged"), tracker.start_run("crash", params={"lr": 3}) as run:
        for step in range(10):
            run.log_metric("loss", 10.0**step)
        raise RuntimeError("loss diverged")
    info = tracker.get_run(run.id)
    assert info.status == "failed"
    assert info.error == "RuntimeError: loss diverged"
    assert info.end_time is not None
    assert info.metrics["loss"].count == 10
    assert info.metrics["loss"].last == 1e9
    with pytest.raises(ConflictError, match="already failed"):
        run.log_metric("loss", 1.0)
    tracker.close()


def test_keyboard_interrupt_marks_the_run_killed(lm: Loopml) -> None:
    with pytest.raises(KeyboardInterrupt), lm.tracking.start_run("ctrl-c") as run:
        run.log_metric("loss", 1.0)
        raise KeyboardInterrupt
    info = lm.tracking.get_run(run.id)
    assert (info.status, info.metrics["loss"].count) == ("killed", 1)


def test_metric_history_is_ordered_by_step_and_auto_steps_continue(lm: Loopml) -> None:
    with lm.tracking.start_run("order") as run:
        for step in (5, 1, 3, 0):
            run.log_metric("loss", float(step), step=step)
        run.log_metric("loss", 6.5)  # auto: next after the highest step seen (5)
        for value in (0.1, 0.2, 0.3):
            run.log_metric("acc", value)
    history = lm.tracking.metric_history(run.id, "loss")
    assert [p.step for p in history] == [0, 1, 3, 5, 6]
    assert [p.value for p in history] == [0.0, 1.0, 3.0, 5.0, 6.5]
    assert all(p.ts.tzinfo is not None for p in history)
    assert [(p.step, p.value) for p in lm.tracking.metric_history(run.id, "acc")] == [
        (0, 0.1),
        (1, 0.2),
        (2, 0.3),
    ]
    summary = lm.tracking.get_run(run.id).metrics["loss"]
    assert (summary.last, summary.last_step, summary.min, summary.max, summary.count) == (6.5, 6, 0.0, 6.5, 5)


def test_nan_and_infinity_are_stored_explicitly(lm: Loopml) -> None:
    with lm.tracking.start_run("nan") as run:
        run.log_metrics({"loss": 0.5})
        run.log_metric("loss", math.nan)
        run.log_metric("loss", math.inf)
        run.log_metric("loss", -math.inf)
        run.log_metric("only_nan", float("nan"))
    values = [p.value for p in lm.tracking.metric_history(run.id, "loss")]
    assert values[0] == 0.5 and math.isnan(values[1]) and values[2:] == [math.inf, -math.inf]
    info = lm.tracking.get_run(run.id)
    assert info.metrics["loss"].last == -math.inf
    assert math.isnan(info.metrics["only_nan"].last)
    as_dict = info.to_dict()["metrics"]
    assert as_dict["loss"]["last"] == "-inf" and as_dict["only_nan"]["last"] == "nan"


def test_concurrent_threads_lose_no_points_and_get_unique_steps(lm: Loopml) -> None:
    tracker = Tracker(lm.ctx, flush_every=300, flush_interval=0.05, record_git=False)
    run = tracker.start_run("threads")

    def work() -> None:
        for i in range(1500):
            run.log_metric("loss", float(i))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.end()
    steps = [p.step for p in tracker.metric_history(run.id, "loss")]
    assert steps == list(range(6000))
    tracker.close()


def test_params_tags_and_list_runs(lm: Loopml) -> None:
    t = lm.tracking
    with t.start_run("sweep", name="first", params={"lr": 0.1, "layers": [64, 32], "opt": "adam"}) as a:
        a.set_tag("stage", "tuning")
        a.log_param("lr", 0.1)  # same value again: fine
        with pytest.raises(ConflictError, match="param 'lr'"):
            a.log_param("lr", 0.2)
        a.log_metric("auc", 0.8)
    a.set_tag("stage", "done")  # tags stay mutable after the run ended
    with t.start_run("other", params={"lr": 1}) as b:
        pass
    info = t.get_run(a.id)
    assert info.params == {"lr": "0.1", "layers": "[64, 32]", "opt": "adam"}
    assert info.tags["stage"] == "done"
    assert (info.status, info.name, info.experiment) == ("finished", "first", "sweep")
    assert info.duration_seconds is not None and info.duration_seconds >= 0
    assert t.get_run(a.id[:8]).id == a.id  # unique prefixes resolve
    assert [r.id for r in t.list_runs(experiment="sweep")] == [a.id]
    assert {r.id for r in t.list_runs()} == {a.id, b.id}
    assert [r.id for r in t.list_runs(status="running")] == []
    assert {e.name: e.run_count for e in t.list_experiments()} == {"sweep": 1, "other": 1}


def test_compare_shows_differing_params_and_final_and_best_metrics(lm: Loopml) -> None:
    t = lm.tracking
    curves = {0.1: [0.9, 0.5, 0.6], 0.01: [0.9, 0.7, 0.4]}
    ids = []
    for lr, losses in curves.items():
        with t.start_run("cmp", params={"lr": lr, "seed": 7}) as run:
            for loss in losses:
                run.log_metric("val_loss", loss)
            run.log_metrics({"accuracy": 1 - losses[-1], "auc": losses[1]})
        ids.append(run.id)
    result = t.compare(ids)
    assert result.run_ids == tuple(ids)
    assert result.params_differ == {"lr": ("0.1", "0.01")}
    assert result.params_same == {"seed": "7"}
    by_key = {m.key: m for m in result.metrics}
    loss = by_key["val_loss"]
    assert (loss.goal, loss.final, loss.best, loss.best_run) == ("min", (0.6, 0.4), (0.5, 0.4), ids[1])
    assert (by_key["accuracy"].goal, by_key["accuracy"].best_run) == ("max", ids[1])
    assert by_key["auc"].best_run == ids[1]
    flipped = t.compare(ids, goals={"auc": "min"})
    assert {m.key: m.best_run for m in flipped.metrics}["auc"] == ids[0]
    assert result.to_dict()["params_differ"] == {"lr": ["0.1", "0.01"]}


def test_lineage_to_dataset_versions_and_artifacts(lm: Loopml, tmp_path: Path) -> None:
    from loopml.data import Column, Contract

    version = lm.datasets.ingest(
        "visits", pd.DataFrame({"store": [1, 2]}), contract=Contract(columns=[Column("store", "int")])
    ).version
    report = tmp_path / "report.txt"
    report.write_text("ok")
    with lm.tracking.start_run("lineage") as run:
        run.log_input(version)
        run.log_input(version.id)  # idempotent
        ref = run.log_artifact(report)
        run.log_artifact(b'{"a": 1}', "config.json")
        run.log_artifact(b'{"a": 1}', "config.json")  # same bytes again: no-op
        with pytest.raises(ConflictError, match=r"config\.json"):
            run.log_artifact(b'{"a": 2}', "config.json")
        with pytest.raises(NotFoundError, match="dataset_version_id 999999"):
            run.log_input(999999)
    info = lm.tracking.get_run(run.id)
    assert info.inputs == (version.id,)
    assert lm.tracking.runs_for_dataset_version(version.id) == [run.id]
    assert [a.name for a in info.artifacts] == ["config.json", "report.txt"]
    assert ref.size == 2 and ref.digest.startswith("sha256:")
    assert lm.tracking.artifact(run.id, "report.txt") == b"ok"
    with pytest.raises(NotFoundError, match=r"Did you mean: report\.txt"):
        lm.tracking.artifact(run.id, "reprt.txt")


BAD_RUN_CALLS = [
    (lambda r: r.log_metric("loss", "0.5"), ValidationError, "metric 'loss'"),
    (lambda r: r.log_metric("loss", None), ValidationError, "metric 'loss'"),
    (lambda r: r.log_metric("flag", True), ValidationError, "metric 'flag'"),
    (lambda r: r.log_metric("loss", object()), ValidationError, "not a number"),
    (lambda r: r.log_metric("", 1.0), ValidationError, "empty"),
    (lambda r: r.log_metric(3, 1.0), ValidationError, "must be a string"),
    (lambda r: r.log_metric("a\nb", 1.0), ValidationError, "control characters"),
    (lambda r: r.log_metric("x" * 300, 1.0), ValidationError, "<= 250"),
    (lambda r: r.log_metric("loss", 1.0, step=-1), ValidationError, "step -1"),
    (lambda r: r.log_metric("loss", 1.0, step=1.5), ValidationError, "step 1.5"),
    (lambda r: r.log_metrics([1, 2]), ValidationError, "dict"),
    (lambda r: r.log_metrics({"acc": "high"}), ValidationError, "metric 'acc'"),
    (lambda r: r.log_params(["lr"]), ValidationError, "params must be a dict"),
    (lambda r: r.log_param("obj", object()), ValidationError, "param 'obj'"),
    (lambda r: r.log_artifact(b"x"), ValidationError, "need a name"),
    (lambda r: r.log_artifact(42), ValidationError, "path or bytes"),
    (lambda r: r.log_artifact("/no/such/file.bin"), NotFoundError, "/no/such/file.bin"),
    (lambda r: r.log_artifact("."), ValidationError, "not a regular file"),
    (lambda r: r.log_input("visits"), ValidationError, "DatasetVersion"),
    (lambda r: r.end("done"), ValidationError, "finished, failed, killed"),
]


def test_bad_input_is_rejected_with_a_message_naming_the_field(lm: Loopml) -> None:
    """One run, many bad calls (one database per backend instead of one per case)."""
    with lm.tracking.start_run("bad") as run:
        for number, (call, error, needle) in enumerate(BAD_RUN_CALLS):
            with pytest.raises(error) as err:
                call(run)
            assert needle in str(err.value), f"case {number}: {err.value}"
            run.log_metric("loss", 0.5)  # the run is still usable after a rejected call
    assert lm.tracking.get_run(run.id).metrics["loss"].count == len(BAD_RUN_CALLS)


def test_bad_tracker_calls(lm: Loopml) -> None:
    t = lm.tracking
    with t.start_run("known") as run:
        run.log_metric("val_loss", 1.0)
    with pytest.raises(NotFoundError, match="loopml runs list"):
        t.get_run("0" * 32)
    with pytest.raises(ValidationError, match="run id"):
        t.get_run(None)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="Did you mean: val_loss"):
        t.metric_history(run.id, "val_los")
    with pytest.raises(NotFoundError, match="Did you mean: known"):
        t.list_runs(experiment="knwon")
    with pytest.raises(ValidationError, match="limit"):
        t.list_runs(limit=0)
    with pytest.raises(ValidationError, match="status"):
        t.list_runs(status="done")
    with pytest.raises(ValidationError, match="at least two"):
        t.compare([run.id, run.id])
    with pytest.raises(ValidationError, match="list of run ids"):
        t.compare(run.id)
    with pytest.raises(ValidationError, match="goals"):
        t.compare([run.id, run.id], goals={"val_loss": "lowest"})
    with pytest.raises(ValidationError, match="experiment key"):
        t.start_run("")
    with pytest.raises(ValidationError, match="params"):
        t.start_run("x", params=[1])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="pipeline_run_id"):
        t.start_run("x", pipeline_run_id=12)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="flush_every"):
        Tracker(lm.ctx, flush_every=0)
    with pytest.raises(ValidationError, match="flush_interval"):
        Tracker(lm.ctx, flush_interval=-1)


def test_run_links_to_its_pipeline_run(lm: Loopml) -> None:
    from loopml.storage.metadata import pipelines as pipeline_store

    pipeline_run_id = "a" * 32
    with lm.ctx.db.session() as session:
        pipeline_store.insert_run(
            session, run_id=pipeline_run_id, pipeline="train", params={}, trigger="manual", steps=["fit"]
        )
    with lm.tracking.start_run("from-pipeline", pipeline_run_id=pipeline_run_id) as run:
        run.log_metric("loss", 0.1)
    assert lm.tracking.get_run(run.id).pipeline_run_id == pipeline_run_id
    with pytest.raises(NotFoundError, match="is not a pipeline run"):
        lm.tracking.start_run("from-pipeline", pipeline_run_id="b" * 32)
    assert [r.id for r in lm.tracking.list_runs("from-pipeline")] == [run.id], "no half-created run is left"


def test_points_for_an_unknown_run_are_refused_and_kept_for_retry(lm: Loopml) -> None:
    from datetime import UTC, datetime

    tracker = Tracker(lm.ctx, flush_every=10, flush_interval=3600, record_git=False)
    tracker._writer.append(
        {"run_id": "f" * 32, "key": "loss", "step": 0, "value": 1.0, "ts": datetime.now(UTC)}
    )
    with pytest.raises(NotFoundError, match="does not exist"):
        tracker.flush()
    assert tracker._writer.pending == 1, "a refused batch stays buffered, it is not silently dropped"
    tracker._writer._buffer.clear()  # this test's bogus point must not be retried at interpreter exit
