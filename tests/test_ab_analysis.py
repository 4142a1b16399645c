"""A/B analysis: metrics, seeded bootstrap intervals and verdicts on synthetic arms with known truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml import Loopml
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.inference import InferenceLog, InferenceRecord, abstats, analyse_ab
from loopml.serving.inference.ab import analyse_frame


def _arm(
    name: str, n: int, *, signal: float, rng: np.random.Generator, reward_p: float | None = None
) -> pd.DataFrame:
    """``n`` requests of one arm: labels 0/1, scores that separate them with strength ``signal``."""
    y = rng.integers(0, 2, size=n)
    logits = signal * (2 * y - 1) + rng.normal(size=n)
    score = 1 / (1 + np.exp(-logits))
    reward = rng.binomial(1, reward_p, size=n).astype(float) if reward_p is not None else np.full(n, np.nan)
    return pd.DataFrame(
        {
            "request_id": [f"{name}-{i}" for i in range(n)],
            "arm": name,
            "model": f"fraud@{name}",
            "version": 1 if name == "a" else 2,
            "status": "ok",
            "output": score,
            "predicted": [None] * n,
            "label": [int(v) for v in y] if reward_p is None else [None] * n,
            "reward": reward,
        }
    )


def _frame(*arms: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(arms, ignore_index=True)


def test_a_clearly_better_arm_wins() -> None:
    rng = np.random.default_rng(1)
    frame = _frame(_arm("a", 600, signal=0.3, rng=rng), _arm("b", 600, signal=1.5, rng=rng))
    result = analyse_frame(frame, "fraud", n_boot=500)
    assert result.metric == "auc" and result.higher_is_better and result.control == "a"
    assert result.verdict == "b is better" and result.winner == "b"
    b = result.arm("b")
    assert b.diff > 0 and b.diff_low > 0 and b.ci_low < b.value < b.ci_high
    assert b.models == ["fraud/2"] and b.labelled == 600
    assert set(b.metrics) >= {"auc", "logloss", "accuracy", "precision", "recall"}
    assert "excludes zero" in result.explanation and "b is better" in result.to_text()


def test_equal_arms_show_no_clear_difference() -> None:
    rng = np.random.default_rng(2)
    frame = _frame(_arm("a", 500, signal=1.0, rng=rng), _arm("b", 500, signal=1.0, rng=rng))
    result = analyse_frame(frame, "fraud", n_boot=500)
    assert result.verdict == "no clear difference" and result.winner is None
    b = result.arm("b")
    assert b.diff_low < 0 < b.diff_high


def test_the_control_wins_when_the_challenger_is_worse_on_a_lower_is_better_metric() -> None:
    rng = np.random.default_rng(3)
    frame = _frame(_arm("a", 600, signal=1.5, rng=rng), _arm("b", 600, signal=0.2, rng=rng))
    result = analyse_frame(frame, "fraud", metric="logloss", n_boot=400)
    assert not result.higher_is_better
    assert result.verdict == "a is better"
    assert result.arm("b").diff > 0  # higher log loss: worse


def test_rewards_pick_the_arm_with_the_higher_mean_reward() -> None:
    rng = np.random.default_rng(4)
    frame = _frame(
        _arm("control", 800, signal=0, rng=rng, reward_p=0.30),
        _arm("x", 800, signal=0, rng=rng, reward_p=0.45),
        _arm("y", 800, signal=0, rng=rng, reward_p=0.31),
    )
    result = analyse_frame(frame, "bandit", n_boot=400)
    assert result.metric == "reward" and result.control == "control"
    assert result.verdict == "x is better"
    assert result.arm("x").value == pytest.approx(frame[frame.arm == "x"].reward.mean())


def test_not_enough_data_and_single_arm() -> None:
    rng = np.random.default_rng(5)
    small = _frame(_arm("a", 500, signal=0.3, rng=rng), _arm("b", 10, signal=3.0, rng=rng))
    result = analyse_frame(small, "fraud", n_boot=200)
    assert result.verdict == "not enough data" and "b (10)" in result.explanation
    single = analyse_frame(_arm("a", 100, signal=1, rng=rng), "fraud", n_boot=200)
    assert single.verdict == "not enough data"
    empty = analyse_frame(small.iloc[:0], "fraud", n_boot=200)
    assert empty.verdict == "not enough data" and empty.arms == []


def test_fallback_answers_do_not_count_and_the_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(6)
    frame = _frame(_arm("a", 300, signal=0.5, rng=rng), _arm("b", 300, signal=0.8, rng=rng))
    frame.loc[:49, "status"] = "fallback"
    one = analyse_frame(frame, "fraud", n_boot=300, seed=7)
    two = analyse_frame(frame, "fraud", n_boot=300, seed=7)
    assert one.to_dict() == two.to_dict()
    assert one.arm("a").n == 300 and one.arm("a").labelled == 250


def test_metric_functions_match_sklearn() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, size=300).astype(float)
    s = np.clip(0.3 * y + rng.uniform(size=300) * 0.7, 0, 1)
    p = (s >= 0.5).astype(float)
    sample = abstats.Sample(y, s, p)
    assert abstats.value("auc", sample) == pytest.approx(skm.roc_auc_score(y, s))
    assert abstats.value("logloss", sample) == pytest.approx(skm.log_loss(y, s))
    assert abstats.value("precision", sample) == pytest.approx(skm.precision_score(y, p))
    assert abstats.value("recall", sample) == pytest.approx(skm.recall_score(y, p))
    assert abstats.value("accuracy", sample) == pytest.approx(skm.accuracy_score(y, p))
    assert abstats.value("mae", sample) == pytest.approx(skm.mean_absolute_error(y, s))
    assert math.isnan(abstats.value("auc", abstats.Sample(np.ones(5), np.ones(5), np.ones(5))))


def test_regression_labels_and_text_labels() -> None:
    rng = np.random.default_rng(9)
    n = 200
    truth = rng.normal(size=2 * n)
    frame = pd.DataFrame(
        {
            "arm": ["a"] * n + ["b"] * n,
            "model": "m",
            "version": 1,
            "status": "ok",
            "output": np.concatenate(
                [truth[:n] + rng.normal(scale=1.0, size=n), truth[n:] + rng.normal(scale=0.1, size=n)]
            ),
            "predicted": [None] * (2 * n),
            "label": list(truth),
            "reward": np.nan,
        }
    )
    result = analyse_frame(frame, "demand", n_boot=300)
    assert result.metric == "mae" and result.verdict == "b is better"
    text = frame.assign(label=["cat", "dog"] * n, predicted=["cat"] * (2 * n), output=np.nan)
    result = analyse_frame(text, "pets", n_boot=200)
    assert result.metric == "accuracy" and result.arm("a").value == pytest.approx(0.5)


def test_bad_arguments_are_refused() -> None:
    frame = _arm("a", 50, signal=1, rng=np.random.default_rng(0))
    for kwargs, field in (
        ({"metric": "f2"}, "metric"),
        ({"n_boot": 10}, "n_boot"),
        ({"confidence": 1.5}, "confidence"),
        ({"min_labelled": 0}, "min_labelled"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises(ValidationError) as err:
            analyse_frame(frame, "fraud", **kwargs)
        assert err.value.field == field
    with pytest.raises(NotFoundError) as err:
        analyse_frame(frame, "fraud", control="zzz")
    assert err.value.field == "control"
    with pytest.raises(ValidationError) as err:
        analyse_frame(frame.drop(columns=["label"]), "fraud")
    assert err.value.field == "label"


def test_analyse_ab_reads_the_log_and_its_feedback(lm: Loopml) -> None:
    """End to end through the database: records, labels sent later, one verdict."""
    rng = np.random.default_rng(10)
    log = InferenceLog(lm.ctx, retry_delay=0.01)
    records, labels = [], []
    for arm, signal in (("a", 0.2), ("b", 2.0)):
        frame = _arm(arm, 300, signal=signal, rng=rng)
        for row in frame.itertuples():
            records.append(
                InferenceRecord(
                    request_id=row.request_id,
                    endpoint="fraud",
                    model=row.model,
                    version=row.version,
                    arm=arm,
                    inputs=[{"x": 1.0}],
                    outputs=[{"label": int(row.output >= 0.5), "probability": row.output}],
                    latency_ms=1.0,
                    status="ok",
                )
            )
            labels.append({"request_id": row.request_id, "label": row.label})
    log.write(records)
    assert analyse_ab(lm, "fraud", n_boot=200).verdict == "not enough data"  # no labels yet
    log.feedback_many("fraud", labels)
    result = analyse_ab(lm, "fraud", n_boot=300)
    assert result.metric == "auc" and result.verdict == "b is better"
    assert result.arm("a").labelled == 300 and result.to_dict()["winner"] == "b"
