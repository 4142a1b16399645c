"""Batch scoring of dataset versions through ``lm.registry.load``, and ``loopml models score``."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli.scoring import add_score_command
from loopml.data import Column, Contract
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.inference import score_dataset


def _data(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    return x.assign(txn_id=np.arange(n), y=(x.x1 + 0.5 * x.x2 > 0).astype(int))


def _contract(unique: bool = True) -> Contract:
    return Contract(
        columns=[
            Column("txn_id", "int", unique=unique),
            Column("x1", "float"),
            Column("x2", "float"),
            Column("y", "int"),
        ],
        unique_key=("txn_id",) if unique else (),
    )


@pytest.fixture
def fraud(lm: Loopml) -> Loopml:
    data = _data()
    model = lgb.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1, random_state=0).fit(
        data[["x1", "x2"]], data.y
    )
    lm.registry.register("fraud", model, input_example=data[["x1", "x2"]].head())
    lm.datasets.ingest("txns", data, contract=_contract())
    return lm


def test_binary_classifier_scores_match_the_loaded_model(fraud: Loopml) -> None:
    version = score_dataset(fraud, "fraud", "txns", batch_rows=64)
    assert version.dataset == "txns_fraud_scores" and version.row_count == 300
    scores = fraud.datasets.read("txns_fraud_scores")
    assert list(scores.columns) == ["txn_id", "prediction", "probability", "model_version"]
    model = fraud.registry.load("fraud/1")
    data = fraud.datasets.read("txns")
    np.testing.assert_allclose(scores["probability"], model.predict_proba(data, strict=False)[:, 1])
    assert (scores["prediction"].to_numpy() == model.predict(data, strict=False)).all()
    assert (scores["txn_id"] == data["txn_id"]).all() and (scores["model_version"] == 1).all()
    assert fraud.datasets.contract("txns_fraud_scores").unique_key == ("txn_id",)
    again = score_dataset(fraud, "fraud/1", "txns", version=1, batch_rows=50_000)
    assert again.digest == version.digest  # batch size does not change a single score


def test_regressor_without_ids_gets_a_row_column(lm_sqlite: Loopml) -> None:
    data = _data(120)
    target = 2 * data.x1 - data.x2
    model = lgb.LGBMRegressor(n_estimators=10, verbose=-1, n_jobs=1).fit(data[["x1", "x2"]], target)
    lm_sqlite.registry.register("demand", model, input_example=data[["x1", "x2"]].head())
    lm_sqlite.datasets.ingest("feats", data, contract=_contract(unique=False))
    version = score_dataset(lm_sqlite, "demand", "feats", output="demand_scores")
    scores = lm_sqlite.datasets.read(version.dataset)
    assert list(scores.columns) == ["row", "prediction", "model_version"]
    assert (scores["row"] == np.arange(120)).all()
    np.testing.assert_allclose(scores["prediction"], model.predict(data[["x1", "x2"]]))
    with_ids = score_dataset(lm_sqlite, "demand", "feats", output="demand_scores", id_columns=["txn_id", "y"])
    assert (
        list(lm_sqlite.datasets.read(with_ids.dataset).columns)[:2] == ["txn_id", "y"]
        and with_ids.number == 2
    )


def test_multiclass_gets_a_probability_per_class(lm_sqlite: Loopml) -> None:
    data = _data(150)
    data["kind"] = np.where(data.x1 > 0.5, "high", np.where(data.x1 < -0.5, "low", "mid"))
    model = LogisticRegression().fit(data[["x1", "x2"]], data.kind)
    lm_sqlite.registry.register("kind", model, input_example=data[["x1", "x2"]].head())
    contract = Contract(columns=[*_contract().columns, Column("kind", "str")], unique_key=("txn_id",))
    lm_sqlite.datasets.ingest("kinds", data, contract=contract)
    scores = lm_sqlite.datasets.read(score_dataset(lm_sqlite, "kind", "kinds").dataset)
    assert [c for c in scores.columns if c.startswith("proba_")] == ["proba_high", "proba_low", "proba_mid"]
    np.testing.assert_allclose(scores[["proba_high", "proba_low", "proba_mid"]].sum(axis=1), 1.0)
    assert set(scores["prediction"]) <= {"high", "low", "mid"}


def test_bad_input_is_refused_with_the_field(fraud: Loopml) -> None:
    for kwargs, field in (
        ({"batch_rows": 0}, "batch_rows"),
        ({"batch_rows": True}, "batch_rows"),
        ({"id_columns": "txn_id"}, "id_columns"),
        ({"id_columns": ["nope"]}, "id_columns"),
        ({"output": "1bad name"}, "output"),
    ):
        with pytest.raises(ValidationError) as err:
            score_dataset(fraud, "fraud", "txns", **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        score_dataset(fraud, "", "txns")
    assert err.value.field == "model_ref"
    with pytest.raises(NotFoundError):
        score_dataset(fraud, "nomodel", "txns")
    with pytest.raises(NotFoundError):
        score_dataset(fraud, "fraud", "nodata")
    fraud.datasets.ingest(
        "partial",
        _data(20)[["txn_id", "x1"]],
        contract=Contract(columns=[Column("txn_id", "int"), Column("x1", "float")]),
    )
    with pytest.raises(ValidationError, match="x2"):
        score_dataset(fraud, "fraud", "partial")


def test_cli_models_score(fraud: Loopml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(fraud.settings.home))
    monkeypatch.setenv("LOOPML_METADATA_URL", fraud.settings.resolved_metadata_url)
    models_app = typer.Typer()
    add_score_command(models_app)
    models_app.command("noop", hidden=True)(lambda: None)
    runner = CliRunner()
    out = runner.invoke(models_app, ["score", "fraud/1", "txns", "--output", "cli_scores", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["dataset"] == "cli_scores" and payload["row_count"] == 300
    out = runner.invoke(models_app, ["score", "fraud", "txns", "--version", "1", "--batch-rows", "7"])
    assert out.exit_code == 0 and "txns_fraud_scores@1" in out.output
