"""What a flavor is: turn a trained object into bytes and bytes back into something that predicts.

Every flavor produces one blob (stored content-addressed, so a version can never point at changed
bytes) plus a small JSON ``meta`` (library versions, objective, classes) that the loader needs and
that ``loopml models show`` displays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError


class Predictor(ABC):
    """A loaded model. Inputs arrive already checked and ordered by the signature."""

    #: True when ``predict`` accepts a float64 matrix (skips building a DataFrame on the hot path).
    accepts_numpy: bool = False
    #: Class labels for classifiers (``predict_proba`` columns follow this order), else None.
    classes: list[Any] | None = None

    @abstractmethod
    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Labels for classifiers, values for regressors."""

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, len(classes))."""
        raise ValidationError(
            f"this {type(self).__name__} is not a classifier, so it has no predict_proba; call predict instead"
        )

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def signature_problems(self, names: list[str]) -> list[str]:
        """Disagreements between the signature's column names and what the model itself declares."""
        return []


@dataclass(frozen=True)
class Saved:
    """A serialised model: the bytes to store and what the loader needs to know about them."""

    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)


class Flavor(ABC):
    """Save/load for one model family. Subclasses are stateless; one instance each lives in ``FLAVORS``."""

    name: str = ""

    @abstractmethod
    def matches(self, model: Any) -> bool:
        """True when ``model`` is an object of this family (used for auto-detection)."""

    @abstractmethod
    def save(self, model: Any) -> Saved:
        """Serialise; raise ValidationError naming the problem when the object cannot be stored."""

    @abstractmethod
    def load(self, data: bytes, meta: dict[str, Any]) -> Predictor:
        """Rebuild a predictor from stored bytes."""

    def default_signature_names(self, model: Any) -> list[str] | None:
        """Feature names the model itself knows, when the user gives neither signature nor example."""
        return None


def labels_from_proba(proba: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Argmax over class probabilities mapped back to the class labels."""
    return np.asarray(classes, dtype=object if any(isinstance(c, str) for c in classes) else None)[
        np.argmax(proba, axis=1)
    ]


def names_problems(model_names: list[str] | None, names: list[str], what: str) -> list[str]:
    if not model_names:
        return []
    if list(model_names) == list(names):
        return []
    missing = [n for n in model_names if n not in names]
    extra = [n for n in names if n not in model_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the {what} expects column(s) {', '.join(missing)} the signature lacks")
        if extra:
            parts.append(f"the signature lists column(s) {', '.join(extra)} the {what} was not trained on")
        return ["; ".join(parts) + "; register with a signature/input_example made from the training frame"]
    return [
        f"the signature orders columns {names} but the {what} was trained on {list(model_names)}; "
        "reorder the input_example like the training frame"
    ]
