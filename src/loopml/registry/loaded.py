"""``LoadedModel``: a registered version ready to predict, with its signature enforced on every call."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.registry.flavors.base import Predictor
from loopml.registry.records import ModelVersion
from loopml.registry.signature import Signature


class LoadedModel:
    """What ``Registry.load`` returns; the serving layer keeps one per version and calls ``predict``.

    Input may be a DataFrame, one row as a dict, a dict of columns, or a list of row dicts. It is
    checked against the signature (missing/extra columns, dtypes, NaN in non-nullable columns) and
    re-ordered to the signature's column order before the model sees it.
    """

    def __init__(self, version: ModelVersion, signature: Signature, predictor: Predictor) -> None:
        self.version = version
        self.signature = signature
        self.predictor = predictor
        self._as_numpy = predictor.accepts_numpy and signature.all_numeric

    @property
    def ref(self) -> str:
        return self.version.ref

    @property
    def flavor(self) -> str:
        return self.version.flavor

    @property
    def is_classifier(self) -> bool:
        return self.predictor.is_classifier

    @property
    def classes(self) -> list[Any] | None:
        return self.predictor.classes

    def prepare(self, data: Any, *, strict: bool = True) -> Any:
        """The checked, ordered model input (what ``predict`` feeds the model)."""
        return self.signature.prepare(data, strict=strict, as_numpy=self._as_numpy)

    def predict(self, data: Any, *, strict: bool = True) -> np.ndarray:
        """Labels for classifiers, values for regressors. ``strict=False`` drops unknown columns."""
        return self.predictor.predict(self.prepare(data, strict=strict))

    def predict_proba(self, data: Any, *, strict: bool = True) -> np.ndarray:
        """Class probabilities (columns in ``classes`` order); ValidationError for regressors."""
        return self.predictor.predict_proba(self.prepare(data, strict=strict))

    def __repr__(self) -> str:
        return f"LoadedModel({self.ref}, flavor={self.flavor}, columns={len(self.signature.columns)})"
