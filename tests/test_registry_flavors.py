"""Each flavor round-trips through the registry and predicts exactly like the original object."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml import Loopml
from loopml.errors import ConfigError, ValidationError
from loopml.registry import BeatsCurrent, SklearnVersionWarning
from loopml.storage.metadata import registry as q


def _classification(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (X.a + 0.5 * X.b + rng.normal(scale=0.5, size=n) > 0).astype(int).to_numpy()
    return X, y


def scale_and_sum(frame: pd.DataFrame) -> np.ndarray:
    """A 'model' that is just a function (python flavor)."""
    return (2 * frame["a"] + frame["b"]).to_numpy()


class ThresholdModel:
    """A custom class with predict/predict_proba (python flavor)."""

    classes_ = np.array(["no", "yes"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-frame["a"].to_numpy()))
        return np.column_stack([1 - p, p])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(frame)[:, 1] >= 0.5).astype(int)]


def test_lightgbm_classifier_keeps_labels_and_probabilities(lm: Loopml) -> None:
    X, y = _classification()
    labels = np.where(y == 1, "fraud", "ok")
    clf = lgb.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1).fit(X, labels)
    v = lm.registry.register("fraud", clf, input_example=X.head())
    assert v.flavor == "lightgbm" and v.flavor_meta["classes"] == ["fraud", "ok"]
    model = lm.registry.load("fraud/1")
    assert model.is_classifier and model.classes == ["fraud", "ok"]
    np.testing.assert_allclose(model.predict_proba(X), clf.predict_proba(X))
    assert list(model.predict(X)) == list(clf.predict(X))


def test_lightgbm_booster_without_example_uses_its_feature_names(lm: Loopml) -> None:
    X, y = _classification()
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 10)
    v = lm.registry.register("fraud", booster)
    assert v.signature["columns"] == [
        {"name": "a", "dtype": "float", "nullable": True},
        {"name": "b", "dtype": "float", "nullable": True},
    ]
    model = lm.registry.load("fraud")
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], booster.predict(X))
    assert set(model.predict(X)) <= {0, 1}


def test_sklearn_pipeline_round_trips_and_records_its_version(lm: Loopml) -> None:
    import sklearn

    X, y = _classification()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    v = lm.registry.register("fraud", pipe, input_example=X.head(), metrics={"auc": 0.9})
    assert v.flavor == "sklearn" and v.flavor_meta["sklearn_version"] == sklearn.__version__
    model = lm.registry.load("fraud/1")
    np.testing.assert_allclose(model.predict_proba(X), pipe.predict_proba(X))


def test_sklearn_version_mismatch_warns_and_unloadable_pickle_names_both_versions(lm: Loopml) -> None:
    X, y = _classification()
    v = lm.registry.register("r", Ridge().fit(X, y), input_example=X.head())
    with lm.ctx.db.session() as session:
        row = q.get_version_by_id(session, v.id)
        row.flavor_meta = {**row.flavor_meta, "sklearn_version": "0.1.0"}
    with pytest.warns(
        SklearnVersionWarning, match=r"saved with scikit-learn 0.1.0.*Install scikit-learn==0.1.0"
    ):
        lm.registry.load("r/1")
    digest = lm.ctx.artifacts.put_bytes(b"not a pickle")
    with lm.ctx.db.session() as session:
        row = q.get_version_by_id(session, v.id)
        row.artifact_digest = digest
    fresh = type(lm.registry)(lm.ctx)  # no cached model
    with (
        pytest.warns(SklearnVersionWarning),
        pytest.raises(ConfigError, match=r"saved with scikit-learn 0.1.0, installed"),
    ):
        fresh.load("r/1")


def test_unfitted_models_are_refused(lm: Loopml) -> None:
    X, _ = _classification()
    with pytest.raises(ValidationError, match="Ridge is not fitted; call fit"):
        lm.registry.register("r", Ridge(), input_example=X.head())
    with pytest.raises(ValidationError, match="LGBMRegressor is not fitted"):
        lm.registry.register("r", lgb.LGBMRegressor(), input_example=X.head())


def test_onnx_bytes_from_skl2onnx(lm: Loopml) -> None:
    from skl2onnx import to_onnx

    X, y = _classification()
    clf = LogisticRegression().fit(X.to_numpy(np.float32), y)
    onx = to_onnx(clf, X.to_numpy(np.float32)[:1], options={id(clf): {"zipmap": False}})
    v = lm.registry.register("fraud", onx.SerializeToString(), input_example=X.head())
    assert v.flavor == "onnx" and v.flavor_meta["outputs"] == ["label", "probabilities"]
    model = lm.registry.load("fraud@latest")
    np.testing.assert_allclose(
        model.predict_proba(X), clf.predict_proba(X.to_numpy(np.float32)), rtol=1e-4, atol=1e-5
    )
    assert list(model.predict(X)) == list(clf.predict(X.to_numpy(np.float32)))
    regressor = to_onnx(Ridge().fit(X.to_numpy(np.float32), y), X.to_numpy(np.float32)[:1])
    lm.registry.register("ridge", regressor, input_example=X.head())
    assert lm.registry.load("ridge").predict({"a": 1.0, "b": 2.0}).shape == (1,)
    with pytest.raises(ValidationError, match="takes 2 columns but the signature has 3"):
        lm.registry.register("ridge", regressor, input_example=X.head().assign(c=1.0))
    with pytest.raises(ValidationError, match="not a loadable ONNX model"):
        lm.registry.register("ridge", b"garbage", input_example=X.head())


def test_python_callables_and_custom_classes(lm: Loopml) -> None:
    X, _y = _classification()
    lm.registry.register("fn", scale_and_sum, input_example=X.head())
    np.testing.assert_allclose(lm.registry.load("fn").predict(X), scale_and_sum(X))
    lm.registry.register("cls", ThresholdModel(), input_example=X.head())
    model = lm.registry.load("cls")
    assert model.flavor == "python" and model.classes == ["no", "yes"]
    assert list(model.predict({"a": 3.0, "b": 0.0})) == ["yes"]
    lm.registry.register("lam", lambda frame: frame["a"].to_numpy() * 0, input_example=X.head())
    assert lm.registry.load("lam").predict(X).sum() == 0
    with pytest.raises(ValidationError, match=r"fails on its own input_example \(KeyError"):
        lm.registry.register("broken", lambda frame: frame["zzz"], input_example=X.head())


def test_classification_gates_on_probabilities(lm: Loopml) -> None:
    X, y = _classification()
    eval_frame = X.assign(label=y)
    weak = lgb.LGBMClassifier(n_estimators=1, num_leaves=2, verbose=-1, n_jobs=1).fit(
        X[["a"]].assign(b=0.0), y
    )
    strong = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    lm.registry.register("fraud", weak, input_example=X.head())
    lm.registry.register("fraud", strong, input_example=X.head())
    lm.registry.protect(
        "fraud",
        "champion",
        [BeatsCurrent("auc", eval_frame, "label", 0.01), BeatsCurrent("f1", eval_frame, "label")],
        actor="lead",
    )
    lm.registry.promote("fraud", 1, actor="ana", reason="")
    report = lm.registry.promote("fraud", 2, actor="ana", reason="")
    auc = report.results[0].details
    assert report.moved and auc["candidate"] > auc["current"] + 0.01
