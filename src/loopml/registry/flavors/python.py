"""Python: any callable (or object with ``predict``) pickled with cloudpickle when installed, else pickle.

Trust boundary: unpickling executes code chosen by whoever registered the model. The registry
verifies that the bytes are the ones registered (sha256), not that they are safe; load only from a
registry whose writers you trust, exactly as with scikit-learn pickles. Functions defined in an
importable module are pickled *by reference* and need that module at load time; functions from
``__main__`` or a notebook are pickled by value (cloudpickle only).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, ValidationError
from loopml.registry.flavors.base import Flavor, Predictor, Saved


def _pickler() -> tuple[str, Any]:
    try:
        import cloudpickle

        return "cloudpickle", cloudpickle
    except ImportError:
        return "pickle", pickle


class PythonPredictor(Predictor):
    def __init__(self, obj: Any) -> None:
        self.obj = obj
        classes = getattr(obj, "classes_", None)
        if classes is not None and hasattr(obj, "predict_proba"):
            self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        fn = self.obj.predict if hasattr(self.obj, "predict") else self.obj
        return np.asarray(fn(X))

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(X)
        return np.asarray(self.obj.predict_proba(X))


class PythonFlavor(Flavor):
    name = "python"

    def matches(self, model: Any) -> bool:
        return callable(model) or callable(getattr(model, "predict", None))

    def save(self, model: Any) -> Saved:
        if not self.matches(model):
            raise ValidationError(
                f"{type(model).__name__} is neither callable nor has a predict method; "
                "wrap it in a function taking a DataFrame"
            )
        serializer, module = _pickler()
        try:
            data = module.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickling fails with many error classes (locks, sockets, lambdas)
            raise ValidationError(
                f"{type(model).__name__} cannot be pickled with {serializer} ({type(exc).__name__}: {exc}); "
                "move open resources out of the model object"
            ) from None
        return Saved(
            data, {"serializer": serializer, "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}"}
        )

    def load(self, data: bytes, meta: dict[str, Any]) -> Predictor:
        serializer = meta.get("serializer", "pickle")
        try:
            if serializer == "cloudpickle":
                import cloudpickle

                obj = cloudpickle.loads(data)
            else:
                obj = pickle.loads(data)
        except ImportError as exc:
            raise ConfigError(
                f"the python model needs a module that is not importable here ({exc}); "
                f"install it (saved under Python {meta.get('python_version')})"
            ) from None
        except Exception as exc:  # unpickling can raise anything
            raise ConfigError(
                f"cannot unpickle the python model ({type(exc).__name__}: {exc}); it was saved with "
                f"{serializer} under Python {meta.get('python_version')}"
            ) from None
        return PythonPredictor(obj)
