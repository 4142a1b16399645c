"""Checks on what users log, so a typo fails at the call site with a message, not later in SQL.

Metric values: numbers (int, float, numpy scalars, 0-d tensors: anything with ``__float__``).
``NaN`` and ``+/-inf`` are *accepted and stored* (as MLflow does): a diverging loss is exactly the
thing a run should record, and raising inside a training loop would lose the run. ``bool`` and
strings are rejected: they are almost always a bug (log them as params or tags).
"""

from __future__ import annotations

import json
import math
from typing import Any

from loopml.errors import ValidationError

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 65_536


def check_key(key: Any, what: str) -> str:
    """A metric/param/tag key: a non-empty string without control characters, at most 250 chars."""
    if not isinstance(key, str):
        raise ValidationError(f"{what} key must be a string, got {type(key).__name__} {key!r}.")
    if not key or key.strip() != key:
        raise ValidationError(
            f"{what} key {key!r} is empty or has leading/trailing spaces; use e.g. 'val_loss'."
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            f"{what} key {key[:40]!r}... is {len(key)} chars; keep keys <= {MAX_KEY_LENGTH}."
        )
    if any(ord(ch) < 32 for ch in key):
        raise ValidationError(
            f"{what} key {key!r} contains control characters; use letters, digits, '_-./ '."
        )
    return key


def metric_value(key: str, value: Any) -> float:
    """The float to store for ``value``; ValidationError naming ``key`` when it is not a number."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if isinstance(value, bool | str | bytes) or not hasattr(value, "__float__"):
        raise ValidationError(
            f"metric {key!r}: value {value!r} ({kind.__name__}) is not a number; "
            "log numbers as metrics and text/flags with log_param or set_tag."
        )
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"metric {key!r}: value {value!r} cannot be converted to float ({exc})."
        ) from None


def metric_step(key: str, step: Any) -> int:
    if type(step) is int and step >= 0:
        return step
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise ValidationError(
            f"metric {key!r}: step {step!r} must be a non-negative integer (or None for auto)."
        )
    step = int(step.__index__())
    if step < 0:
        raise ValidationError(f"metric {key!r}: step {step} is negative; steps start at 0.")
    return step


def text_value(key: str, value: Any, what: str) -> str:
    """Param/tag values are stored as text: strings as is, anything else as JSON (so 0.1 stays 0.1)."""
    if isinstance(value, str):
        text = value
    else:
        if isinstance(value, float) and not math.isfinite(value):
            text = str(value)
        else:
            try:
                text = json.dumps(value, sort_keys=True, default=_no_json)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"{what} {key!r}: value of type {type(value).__name__} cannot be stored ({exc}); "
                    "pass a str, number, bool, None, or a JSON-serialisable list/dict."
                ) from None
    if len(text) > MAX_VALUE_LENGTH:
        raise ValidationError(
            f"{what} {key!r}: value is {len(text)} chars; keep it <= {MAX_VALUE_LENGTH} or log it as an artifact."
        )
    return text


def _no_json(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def is_nan(value: float) -> bool:
    return value != value
