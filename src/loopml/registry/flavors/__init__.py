"""Model flavors: how each model family is saved to bytes and loaded back, and auto-detection."""

from __future__ import annotations

from typing import Any

from loopml.errors import ValidationError, did_you_mean
from loopml.registry.flavors.base import Flavor, Predictor, Saved
from loopml.registry.flavors.lightgbm import LightGBMFlavor
from loopml.registry.flavors.onnx import OnnxFlavor
from loopml.registry.flavors.python import PythonFlavor
from loopml.registry.flavors.sklearn import SklearnFlavor, SklearnVersionWarning

#: Detection order matters: LightGBM's sklearn wrappers are also sklearn estimators, and every
#: estimator is also "an object with predict", so the python flavor comes last.
FLAVORS: dict[str, Flavor] = {
    f.name: f for f in (LightGBMFlavor(), OnnxFlavor(), SklearnFlavor(), PythonFlavor())
}


def get_flavor(name: str) -> Flavor:
    if not isinstance(name, str) or name not in FLAVORS:
        raise ValidationError(
            f"flavor {name!r} is unknown; use one of {', '.join(FLAVORS)}.{did_you_mean(str(name), FLAVORS)}"
        )
    return FLAVORS[name]


def detect_flavor(model: Any) -> Flavor:
    """The first flavor whose ``matches`` accepts the object."""
    for flavor in FLAVORS.values():
        if flavor.matches(model):
            return flavor
    raise ValidationError(
        f"cannot tell how to store a {type(model).__name__}: pass a LightGBM/scikit-learn model, ONNX bytes, "
        "or a callable, or name the flavor with flavor=..."
    )


__all__ = ["FLAVORS", "Flavor", "Predictor", "Saved", "SklearnVersionWarning", "detect_flavor", "get_flavor"]
