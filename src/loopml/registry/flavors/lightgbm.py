"""LightGBM: stored in LightGBM's own text format (``model_to_string``), not pickled.

The text format is stable across LightGBM versions and loads without running arbitrary code. A
scikit-learn wrapper (LGBMClassifier/LGBMRegressor) is stored as its booster plus the class labels,
so ``predict`` returns the original labels and ``predict_proba`` the probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError
from loopml.registry.flavors.base import Flavor, Predictor, Saved, labels_from_proba, names_problems

#: Below this many rows LightGBM predicts on one thread: OpenMP start-up costs ~1 ms per call, which
#: dominates small (online) requests; big batch frames still use every core.
SINGLE_THREAD_ROWS = 2_000

CLASSIFIER_OBJECTIVES = (
    "binary",
    "multiclass",
    "multiclassova",
    "softmax",
    "ova",
    "cross_entropy",
    "xentropy",
)


def _objective(booster: Any) -> str:
    params = getattr(booster, "params", None) or {}
    objective = params.get("objective")
    if objective:
        return str(objective)
    dump = booster.dump_model(num_iteration=0)
    return str(dump.get("objective", "regression")).split()[0]


class LightGBMPredictor(Predictor):
    accepts_numpy = True

    def __init__(self, booster: Any, meta: dict[str, Any]) -> None:
        self.booster = booster
        self.objective = meta.get("objective", "regression")
        self.num_class = int(meta.get("num_class", 1))
        classes = meta.get("classes")
        if classes is None and self.objective.split()[0] in CLASSIFIER_OBJECTIVES:
            classes = [0, 1] if self.num_class <= 1 else list(range(self.num_class))
        self.classes = classes
        self.feature_names = list(booster.feature_name())

    def _raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if len(X) < SINGLE_THREAD_ROWS:
            return np.asarray(self.booster.predict(X, num_threads=1))
        return np.asarray(self.booster.predict(X))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.classes is None:
            return self._raw(X)
        return labels_from_proba(self.predict_proba(X), self.classes)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(X)
        raw = self._raw(X)
        if raw.ndim == 1:  # binary: probability of the positive class
            return np.column_stack([1.0 - raw, raw])
        return raw

    def signature_problems(self, names: list[str]) -> list[str]:
        auto = all(n == f"Column_{i}" for i, n in enumerate(self.feature_names))
        return [] if auto else names_problems(self.feature_names, names, "LightGBM model")


class LightGBMFlavor(Flavor):
    name = "lightgbm"

    def matches(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "lightgbm"

    def save(self, model: Any) -> Saved:
        import lightgbm

        meta: dict[str, Any] = {"lightgbm_version": lightgbm.__version__}
        if isinstance(model, lightgbm.LGBMModel):
            try:
                booster = model.booster_
            except (AttributeError, lightgbm.compat.LGBMNotFittedError):
                raise ValidationError(
                    f"{type(model).__name__} is not fitted; call fit() before registering"
                ) from None
            meta["wrapper"] = type(model).__name__
            if isinstance(model, lightgbm.LGBMClassifier):
                meta["classes"] = [c.item() if isinstance(c, np.generic) else c for c in model.classes_]
        elif isinstance(model, lightgbm.Booster):
            booster = model
            meta["wrapper"] = "Booster"
        else:
            raise ValidationError(f"{type(model).__name__} is not a LightGBM Booster or LGBMModel")
        meta["objective"] = _objective(booster)
        meta["num_class"] = int(booster.params.get("num_class", 1) if booster.params else 1)
        if meta["num_class"] == 1:
            meta["num_class"] = int(booster.dump_model(num_iteration=0).get("num_class", 1))
        text = booster.model_to_string()
        return Saved(text.encode("utf-8"), meta)

    def load(self, data: bytes, meta: dict[str, Any]) -> Predictor:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=data.decode("utf-8"))
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"stored LightGBM model cannot be parsed ({exc}); re-register the model"
            ) from None
        return LightGBMPredictor(booster, meta)

    def default_signature_names(self, model: Any) -> list[str] | None:
        booster = getattr(model, "booster_", model)
        if not hasattr(booster, "feature_name"):
            return None
        names = list(booster.feature_name())
        return None if all(n == f"Column_{i}" for i, n in enumerate(names)) else names
