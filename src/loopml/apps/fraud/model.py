"""The fraud model: a LightGBM classifier on the user features, plus the metrics a fraud team reads.

AUC says how well transactions are ranked; ``precision@k`` is the share of real fraud among the
``review_share`` riskiest transactions (what a team of analysts can look at); precision and recall at
``threshold`` describe an automatic block rule. Metrics are always computed on a later period than
the training data, because fraud changes over time and a random split would flatter the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.features import MODEL_FEATURES
from loopml.errors import ValidationError

MODEL = "fraud"
LABEL = "label"


@dataclass(frozen=True)
class Scores:
    """Metrics of one model on one labelled set."""

    rows: int
    positives: int
    auc: float | None
    precision_at_k: float | None
    recall_at_k: float | None
    precision: float | None
    recall: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The finite metrics, for ``log_metric`` and the registry."""
        names = ("auc", "precision_at_k", "recall_at_k", "precision", "recall")
        values = {f"{prefix}{n}": getattr(self, n) for n in names}
        return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}


def score(y: Any, p: Any, *, threshold: float = 0.3, review_share: float = 0.01) -> Scores:
    """Fraud metrics for labels ``y`` (0/1) and scores ``p``; undefined metrics are None, not errors."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValidationError(
            f"labels and scores must be two 1-d arrays of one length; got {y.shape} and {p.shape}"
        )
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    n, pos = len(y), int(y.sum())
    if n == 0:
        return Scores(0, 0, None, None, None, None, None)
    auc = float(roc_auc_score(y, p)) if 0 < pos < n else None
    k = max(1, round(n * review_share))
    top = np.argsort(-p, kind="stable")[:k]
    flagged = p >= threshold
    return Scores(
        rows=n,
        positives=pos,
        auc=auc,
        precision_at_k=float(y[top].mean()),
        recall_at_k=float(y[top].sum() / pos) if pos else None,
        precision=float(y[flagged].mean()) if flagged.any() else None,
        recall=float(y[flagged].sum() / pos) if pos else None,
    )


def lgb_params(cfg: FraudConfig, *, seed: int = 7) -> dict[str, Any]:
    """One thread (serving latency, and no contention with the server's other work), fixed seeds."""
    return {
        "n_estimators": cfg.n_estimators,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": 20,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "n_jobs": 1,
        "random_state": seed,
        "deterministic": True,
        "verbose": -1,
    }


def fit(frame: pd.DataFrame, cfg: FraudConfig, *, seed: int = 7) -> lgb.LGBMClassifier:
    """Train on the model features of ``frame`` (a point-in-time training frame with ``label``)."""
    X, y = xy(frame)
    if y.nunique() < 2:
        raise ValidationError(
            f"the training frame has only label {y.iloc[0] if len(y) else None!r}: widen the training window "
            "or raise the fraud shares so both classes appear",
            field=LABEL,
        )
    model = lgb.LGBMClassifier(**lgb_params(cfg, seed=seed))
    model.fit(X, y)
    return model


def xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The model's input columns (float, in the one fixed order) and the label."""
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"frame must be a pandas DataFrame, got {type(frame).__name__}", field="frame")
    missing = [c for c in [*MODEL_FEATURES, LABEL] if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"the training frame lacks {missing}; build it with loopml.apps.fraud.features.training_frame",
            field=f"frame.{missing[0]}",
        )
    if frame.empty:
        raise ValidationError("the training frame is empty: no transactions in the window", field="frame")
    X = frame[MODEL_FEATURES].astype(float)
    return X, frame[LABEL].astype(int)


class CategoryEncodedModel:
    """A model shipped with its own merchant-category lookup table, built from its training data.

    This is how v3 of the story breaks: its training job filtered one category out by mistake, so the
    table lacks it and every transaction from that category raises. Registration and the runtime's
    load check pass (its example rows come from its own training data); only live traffic finds out.
    """

    def __init__(self, booster: lgb.LGBMClassifier, known_mcc: list[int]) -> None:
        self.booster = booster
        self.known_mcc = sorted(int(m) for m in known_mcc)
        self.classes_ = np.array([0, 1])

    def _check(self, X: Any) -> Any:
        if isinstance(X, pd.DataFrame):
            mcc = X["mcc"].to_numpy()
            values: Any = X
        else:
            values = np.asarray(X, dtype=float)
            mcc = values[:, MODEL_FEATURES.index("mcc")]
        unknown = sorted(set(np.asarray(mcc, dtype=int).tolist()) - set(self.known_mcc))
        if unknown:
            raise KeyError(f"merchant category code(s) {unknown} not in the model's lookup table")
        if not isinstance(values, pd.DataFrame):
            values = pd.DataFrame(values, columns=MODEL_FEATURES)
        return values

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.booster.predict_proba(self._check(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.booster.predict(self._check(X))
