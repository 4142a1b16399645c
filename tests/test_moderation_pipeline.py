"""Retraining and release: the week split, calibrated scores, thresholds sized by operator capacity,
the ``moderation.retrain`` pipeline (a registered, gated challenger with metrics and lineage), and
the whole story in fast mode (uploads -> worker -> review -> retrain -> shadow -> A/B -> release)."""

from __future__ import annotations

import pickle
from datetime import date

import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.apps.moderation import pipeline as rp
from loopml.apps.moderation import review, training
from loopml.errors import ValidationError

AS_OF = date(2026, 12, 2)  # a Wednesday: its week starts 2026-11-30


def frame(weeks: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        {
            "image_path": f"/x/{w}-{i}.jpg",
            "width": 10,
            "height": 10,
            "has_face": y,
            "week": w,
            "source": "s",
            "kind": "face" if y else "animal",
            "boxes": "[]",
        }
        for w, labels in weeks.items()
        for i, y in enumerate(labels)
    ]
    return pd.DataFrame(rows, columns=training.TRAIN_COLUMNS)


def test_split_holds_out_the_latest_complete_week_with_both_classes() -> None:
    data = frame(
        {
            "2026-11-16": [0, 1] * 10,
            "2026-11-23": [0, 1] * 5,
            "2026-11-30": [1, 1, 0],  # this week: incomplete, trains
        }
    )
    split = training.split_by_week(data, AS_OF, validation_share=0.25, seed=1)
    assert split.held_out_week == "2026-11-23" and len(split.held_out) == 10
    assert set(split.train["week"]) | set(split.validation["week"]) == {"2026-11-16", "2026-11-30"}
    assert len(split.train) + len(split.validation) == 23
    assert split.validation["has_face"].nunique() == 2  # stratified
    one_class = frame({"2026-11-23": [1, 1, 1], "2026-11-16": [0, 1]})
    assert training.split_by_week(one_class, AS_OF).held_out_week == "2026-11-16"
    with pytest.raises(ValidationError) as none:
        training.split_by_week(frame({"2026-11-30": [0, 1]}), AS_OF)
    assert none.value.field == "as_of"
    assert (
        training.calendar_week(6, AS_OF) == "2026-11-23" and training.calendar_week(1, AS_OF) == "2026-10-19"
    )


class Fixed:
    """A scorer with known raw scores (a test double for the *input*, not the feature under test)."""

    classes_ = np.array([0, 1])
    max_side = 640

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls = 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += len(frame)
        s = np.array([self.scores[p] for p in frame["image_path"]], dtype=float)
        return np.column_stack([1 - s, s])


def test_calibration_puts_each_versions_cuts_on_the_config_scale(tmp_path) -> None:
    paths = []
    for name in ("a", "b", "c", "d"):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(name.encode())
        paths.append(str(path))
    raw = dict(zip(paths, [0.1, 0.9, 0.95, 0.99], strict=True))
    model = training.CalibratedScreener(
        Fixed(raw), raw_review_at=0.9, raw_reject_at=0.99, review_at=0.4, reject_at=0.8
    )
    rows = pd.DataFrame({"image_path": paths, "width": 1, "height": 1})
    cal = model.predict_proba(rows)[:, 1]
    assert cal[1] == pytest.approx(0.4) and cal[3] == pytest.approx(0.8)
    assert list(np.argsort(cal)) == [0, 1, 2, 3]  # monotone: ranks (so precision/recall) unchanged
    assert model.predict(rows).tolist() == [0, 1, 1, 1]  # 1 = flagged (review or reject)
    calls = model.model.calls
    model.predict_proba(rows)  # the gate re-scores the same images: remembered
    assert model.model.calls == calls
    assert "_memo" not in pickle.loads(pickle.dumps(model)).__dict__
    never = training.CalibratedScreener(
        Fixed(raw), raw_review_at=0.9, raw_reject_at=None, review_at=0.4, reject_at=0.8
    )
    assert never.predict_proba(rows)[:, 1].max() < 0.8  # never rejects without a person
    with pytest.raises(ValidationError) as bad:
        training.CalibratedScreener(
            Fixed(raw), raw_review_at=0.9, raw_reject_at=0.5, review_at=0.4, reject_at=0.8
        )
    assert bad.value.field == "raw_reject_at"


def test_thresholds_keep_precision_and_fit_the_review_band_to_capacity() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50, dtype=int), np.zeros(50, dtype=int)]
    scores = np.clip(np.r_[rng.uniform(0.5, 1.0, 50), rng.uniform(0.0, 0.7, 50)], 0, 1)
    loose = training.fit_thresholds(
        scores, labels, min_precision=0.98, capacity_per_week=10_000, weekly_uploads=1000, face_share=0.05
    )
    tight = training.fit_thresholds(
        scores, labels, min_precision=0.98, capacity_per_week=20, weekly_uploads=1000, face_share=0.05
    )
    assert tight["review_at"] > loose["review_at"]
    volume = training.review_volume(
        scores, labels, tight["review_at"], tight["reject_at"] or np.inf, weekly_uploads=1000, face_share=0.05
    )
    assert volume <= 20
    metrics = training.screening_metrics(
        scores, labels, loose, capacity_per_week=10_000, weekly_uploads=1000, face_share=0.05
    )
    assert metrics["precision_reject"] is None or metrics["precision_reject"] >= 0.9
    assert metrics["recall"] >= 0.9 and metrics["within_capacity"]
    with pytest.raises(ValidationError) as bad:
        rp.retrain_params(n=10)
    assert bad.value.field == "n"
    with pytest.raises(ValidationError) as bad_date:
        rp.retrain_params(as_of="next tuesday")
    assert bad_date.value.field == "as_of"


def test_retrain_pipeline_registers_a_gated_challenger_with_metrics(lm_sqlite: Loopml) -> None:
    """No champion yet (the story test covers the gate against one): the candidate is the first holder."""
    lm = lm_sqlite
    from test_moderation_review import held

    ids = held(lm, 2)
    review.decide(lm, ids[0], approve=True, actor="ops", export=False)  # exported by the labels step
    review.decide(lm, ids[1], approve=False, actor="ops", export=False)
    params = rp.retrain_params(n=120, seed=0)
    run = lm.pipelines.run(rp.RETRAIN, params)
    assert run.status == "succeeded", [(s.step, s.error) for s in run.steps if s.error]
    labels = lm.pipelines.output(run.id, "labels")
    assert labels["reviews"] == 2 and len(labels["dataset_version_ids"]) == 2
    evaluated = lm.pipelines.output(run.id, "evaluate")
    assert evaluated["champion"] is None and evaluated["held_out_week"] < review.week_of(date.today())
    gate = lm.pipelines.output(run.id, "gate")
    version = lm.registry.get_version(f"moderation-face/{gate['version']}")
    for key in ("accuracy", "precision", "recall", "flagged_per_week", "capacity", "raw_review_at"):
        assert key in version.metrics
    assert set(labels["dataset_version_ids"]) <= set(version.lineage["dataset_version_ids"])
    assert version.run_id and lm.tracking.get_run(version.run_id).metrics
    assert version.flavor == "python"
    assert gate["passed"] and gate["challenger"] == version.number
    aliases = {a.alias: a.version for a in lm.registry.aliases("moderation-face")}
    assert aliases == {"challenger": version.number}  # the pipeline never promotes
    assert len(lm.datasets.read(training.EVAL_DATASET)) == evaluated["candidate"]["rows"]
    loaded = lm.registry.load("moderation-face@challenger")
    row = lm.datasets.read(training.EVAL_DATASET).head(1)[training.INPUT_COLUMNS]
    assert 0.0 <= float(loaded.predict_proba(row)[0, 1]) <= 1.0
    # a second run on the same labels reuses the trained model and its version
    again = lm.pipelines.run(rp.RETRAIN, params)
    assert lm.pipelines.output(again.id, "gate")["version"] == gate["version"]
    assert {s.step: s.status for s in again.steps}["train"] == "skipped"


def test_story_fast_ends_in_the_expected_states(lm_sqlite: Loopml) -> None:
    from loopml.apps.moderation.story import run_moderation_story

    lines: list[str] = []
    result = run_moderation_story(lm_sqlite, fast=True, say=lines.append)
    assert result.refused >= 1 and result.duplicate_caught
    assert set(result.outcomes) <= {"published", "rejected", "review", "failed"}
    assert result.outcomes.get("screening", 0) == 0 and result.outcomes.get("review", 0) == 0  # queue cleared
    assert result.reviewed >= 1 and result.labels_rows >= 1
    assert result.v1 and result.v2 and result.held_out_week
    assert (
        result.shadow is not None and result.shadow["shadowed"] >= 1 and result.shadow["shadow_errors"] == 0
    )
    if result.gate["passed"]:
        assert result.ab is not None and result.ab["verdict"]
    else:
        assert result.ab is None and "blocked" in result.promotion
    assert result.champion == (result.v2_version if result.promoted else result.v1_version)
    assert lm_sqlite.endpoints.get("moderation").spec.policy.kind == "single"
    assert result.notifications == sum(result.outcomes.values()) + result.reviewed  # one per decision
    assert (
        result.deliveries == {"delivered": result.notifications}
        and result.webhook_posts == result.notifications
    )
    assert any("shadow" in line for line in lines)
    from loopml.cli.moderation import figures

    table = dict(figures(result))
    assert table["champion"] == f"v{result.champion}" and "published" in table["uploads by outcome"]


def test_thresholds_clear_the_champions_precision_on_validation_within_capacity() -> None:
    """The operating point is chosen on validation: the lowest cut (most recall) whose held-back
    uploads are at least as precise as the champion's there and whose review volume fits capacity."""
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(60, dtype=int), np.zeros(60, dtype=int)]
    scores = np.r_[rng.uniform(0.3, 1.0, 60), rng.uniform(0.0, 0.8, 60)]
    volume = {"capacity_per_week": 10_000, "weekly_uploads": 1000, "face_share": 0.05}
    free = training.fit_thresholds(scores, labels, min_precision=0.99, target_recall=1.0, **volume)
    barred = training.fit_thresholds(
        scores, labels, min_precision=0.99, target_recall=1.0, min_flag_precision=0.9, **volume
    )
    assert barred["review_at"] > free["review_at"]
    flagged = scores >= barred["review_at"]
    assert labels[flagged].mean() >= 0.9
    lower = scores[scores < barred["review_at"]].max()  # the next cut down breaks the bar
    assert labels[scores >= lower].mean() < 0.9
    # an unreachable bar: the most precise cut within capacity, never an error
    best = training.fit_thresholds(scores, labels, min_precision=0.99, min_flag_precision=1.01, **volume)
    assert labels[scores >= best["review_at"]].mean() == 1.0
