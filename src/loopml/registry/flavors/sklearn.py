"""scikit-learn: pickled with joblib, with the scikit-learn version recorded next to the bytes.

scikit-learn pickles are only guaranteed to load in the version that wrote them: a different
version warns (``SklearnVersionWarning``) and a pickle that no longer loads raises ``ConfigError``
naming both versions, instead of a bare AttributeError from deep inside unpickling. Loading a
pickle runs code: only load versions from a registry you trust.
"""

from __future__ import annotations

import io
import pickle
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, ValidationError
from loopml.registry.flavors.base import Flavor, Predictor, Saved, names_problems


class SklearnVersionWarning(UserWarning):
    """The scikit-learn that loads a model differs from the one that saved it."""


class SklearnPredictor(Predictor):
    def __init__(self, model: Any) -> None:
        self.model = model
        classes = getattr(model, "classes_", None)
        if classes is not None and hasattr(model, "predict_proba"):
            self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
        self.feature_names = [str(n) for n in getattr(model, "feature_names_in_", [])] or None

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(X))

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(X)
        return np.asarray(self.model.predict_proba(X))

    def signature_problems(self, names: list[str]) -> list[str]:
        return names_problems(self.feature_names, names, "scikit-learn model")


class SklearnFlavor(Flavor):
    name = "sklearn"

    def matches(self, model: Any) -> bool:
        module = type(model).__module__.split(".")[0]
        if module == "sklearn":
            return True
        try:
            from sklearn.base import BaseEstimator
        except ImportError:  # pragma: no cover - scikit-learn is a core dependency
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: Any) -> Saved:
        import joblib
        import sklearn
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        if not hasattr(model, "predict"):
            raise ValidationError(
                f"{type(model).__name__} has no predict method; register a fitted estimator"
            )
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise ValidationError(
                f"{type(model).__name__} is not fitted; call fit() before registering"
            ) from None
        except TypeError:
            pass  # not an estimator check_is_fitted understands; predict will tell at register time
        buf = io.BytesIO()
        try:
            joblib.dump(model, buf)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ValidationError(f"{type(model).__name__} cannot be pickled ({exc})") from None
        meta = {
            "sklearn_version": sklearn.__version__,
            "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
        }
        return Saved(buf.getvalue(), meta)

    def load(self, data: bytes, meta: dict[str, Any]) -> Predictor:
        import joblib
        import sklearn

        saved = meta.get("sklearn_version")
        if saved and saved != sklearn.__version__:
            warnings.warn(
                f"model was saved with scikit-learn {saved} but {sklearn.__version__} is installed; "
                f"predictions may differ. Install scikit-learn=={saved} or re-register the model.",
                SklearnVersionWarning,
                stacklevel=3,
            )
        try:
            model = joblib.load(io.BytesIO(data))
        except Exception as exc:  # unpickling can fail with any error class from any library
            raise ConfigError(
                f"cannot load the scikit-learn model (saved with scikit-learn {saved}, installed "
                f"{sklearn.__version__}): {type(exc).__name__}: {exc}. Install scikit-learn=={saved} "
                "or re-register the model."
            ) from None
        return SklearnPredictor(model)

    def default_signature_names(self, model: Any) -> list[str] | None:
        names = getattr(model, "feature_names_in_", None)
        return [str(n) for n in names] if names is not None else None
