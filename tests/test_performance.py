"""Performance metrics equal scikit-learn's, slice gaps, and bad input naming the field."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml.errors import ValidationError
from loopml.monitoring.performance import (
    classification_metrics,
    infer_task,
    performance_report,
    regression_metrics,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    score = np.round(np.clip(y * 0.3 + rng.normal(0.35, 0.25, 500), 0, 1), 2)  # rounded: many ties
    got = classification_metrics(y, score, threshold=0.5)
    pred = score >= 0.5
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert got["positives"] == int(y.sum())
    assert got["predicted_positive_rate"] == pytest.approx(pred.mean())
    assert got["n"] == 500


def test_classification_edge_cases() -> None:
    one_class = classification_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert one_class["auc"] is None and one_class["recall"] == pytest.approx(2 / 3)
    none_predicted = classification_metrics([0, 1], [0.1, 0.2])
    assert none_predicted["precision"] == 0.0 and none_predicted["f1"] == 0.0
    assert classification_metrics([True, False], [0.9, 0.1])["accuracy"] == 1.0


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.gamma(2.0, 10.0, 400)
    pred = y + rng.normal(1.0, 3.0, 400)
    got = regression_metrics(y, pred)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-9)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), abs=1e-9)
    assert got["wape"] == pytest.approx(np.abs(pred - y).sum() / np.abs(y).sum(), abs=1e-12)
    assert got["bias"] == pytest.approx((pred - y).mean(), abs=1e-12)
    assert regression_metrics([0.0, 0.0], [1.0, -1.0])["wape"] is None


def test_report_shape_slices_and_gaps() -> None:
    rng = np.random.default_rng(4)
    n = 600
    region = np.where(np.arange(n) % 3 == 0, "north", "south")
    y = rng.integers(0, 2, n)
    # the model is good in the south and a coin flip in the north
    score = np.where(region == "south", np.clip(y + rng.normal(0, 0.2, n), 0, 1), rng.random(n))
    frame = pd.DataFrame({"label": y.astype(object), "score": score, "region": region, "tiny": "x"})
    frame.loc[0, "tiny"] = "rare"
    frame.loc[5, "label"] = None  # unlabelled rows are left out
    report = performance_report(
        frame, task="auto", label_col="label", score_col="score", slices=["region", "tiny"], min_slice_rows=30
    )
    assert set(report) == {"task", "labelled", "metrics", "slices", "gaps"}
    assert report["task"] == "classification" and report["labelled"] == n - 1
    assert set(report["slices"]["region"]) == {"north", "south"}
    north, south = report["slices"]["region"]["north"], report["slices"]["region"]["south"]
    assert north["n"] + south["n"] == n - 1
    assert report["gaps"]["region"]["accuracy"] == pytest.approx(south["accuracy"] - north["accuracy"])
    assert report["gaps"]["region"]["auc"] > 0.3
    assert "n" not in report["gaps"]["region"] and "positives" not in report["gaps"]["region"]
    assert report["gaps"]["tiny"] == {}  # "rare" has 1 row: below min_slice_rows, so no gap
    regression = performance_report(
        pd.DataFrame({"y": [1.0, 2.0, 30.0], "p": [1.5, 2.0, 20.0]}),
        task="auto",
        label_col="y",
        score_col="p",
    )
    assert regression["task"] == "regression" and regression["metrics"]["mae"] == pytest.approx(3.5)
    empty = performance_report(
        pd.DataFrame({"y": [None], "p": [0.3]}), task="auto", label_col="y", score_col="p"
    )
    assert empty["labelled"] == 0 and empty["metrics"] == {}
    assert infer_task([0, 1, 1]) == "classification" and infer_task([0.5, 2]) == "regression"


def test_bad_input_names_the_field() -> None:
    frame = pd.DataFrame({"y": [0, 1], "p": [0.2, 0.8]})
    cases = [
        (lambda: performance_report(frame, task="ranking", label_col="y", score_col="p"), "task"),
        (lambda: performance_report(frame, task="auto", label_col="nope", score_col="p"), "label_col"),
        (
            lambda: performance_report(frame, task="auto", label_col="y", score_col="p", slices=["z"]),
            "slices",
        ),
        (
            lambda: performance_report(frame, task="auto", label_col="y", score_col="p", min_slice_rows=0),
            "min_slice_rows",
        ),
        (lambda: performance_report([1, 2], task="auto", label_col="y", score_col="p"), "frame"),
        (lambda: classification_metrics([0, 2], [0.1, 0.9]), "y_true"),
        (lambda: classification_metrics([0, 1], [0.1]), "score"),
        (lambda: classification_metrics([0, 1], [0.1, float("nan")]), "score"),
        (lambda: classification_metrics([0, 1], [0.1, 0.2], threshold=float("inf")), "threshold"),
        (lambda: regression_metrics([], []), "y_true"),
        (lambda: regression_metrics(["a"], [1.0]), "y_true"),
    ]
    for call, field in cases:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field, (field, str(info.value))
    strings = pd.DataFrame({"y": ["cat", "dog"], "p": [0.2, 0.8]})
    with pytest.raises(ValidationError) as info:
        performance_report(strings, task="auto", label_col="y", score_col="p")
    assert info.value.field == "label_col"
