"""Reading a logged output as numbers: the score (probability or value) and the predicted label.

The runtime logs what it answered: a number for a regressor or a binary score, or a dict such as
``{"label": 1, "probability": 0.83}`` for a classifier. Analysis and drift checks only need the
score and the label, whatever the shape, so this is the one place that knows the shapes.
"""

from __future__ import annotations

import math
from typing import Any

SCORE_KEYS = ("probability", "score", "proba", "value", "prediction", "output")
LABEL_KEYS = ("label", "class", "prediction")


def score_of(output: Any) -> float | None:
    """The numeric score of one output, or None when it has none (a string label, an error)."""
    if isinstance(output, bool):
        return float(output)
    if isinstance(output, (int, float)):
        value = float(output)
        return value if math.isfinite(value) else None
    if isinstance(output, dict):
        for key in SCORE_KEYS:
            if key in output:
                value = output[key]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = float(value)
                    return value if math.isfinite(value) else None
        return None
    if isinstance(output, list) and len(output) == 1:
        return score_of(output[0])
    return None


def label_of(output: Any) -> Any:
    """The predicted label of one output when the runtime logged one (dict outputs), else None."""
    if isinstance(output, dict):
        for key in LABEL_KEYS:
            if key in output:
                return output[key]
    return None


def first(outputs: Any) -> Any:
    """The first row's output: feedback labels one request, so analysis reads its first row."""
    if isinstance(outputs, list):
        return outputs[0] if outputs else None
    return outputs
