"""Run params: checked against the pipeline's declared defaults before anything is queued.

A param's type is the type of its default, so ``params={"weeks": 8}`` makes ``weeks`` an int.
Strings are converted (the CLI passes ``--param weeks=4`` as text), everything else must already
have the right type: a wrong value is caught at submit time with a message naming the param,
instead of failing a step an hour into the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from loopml.errors import ValidationError, did_you_mean

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def resolve_params(
    pipeline: str, declared: Mapping[str, Any], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value coerced to its default's type; JSON-serialisable."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValidationError(f"params must be a dict of name -> value, got {type(given).__name__}")
    out = dict(declared)
    for key, value in given.items():
        if key not in declared:
            hint = did_you_mean(str(key), list(declared)) if declared else " It declares no params."
            raise ValidationError(f"pipeline {pipeline!r} has no param {key!r}.{hint}")
        out[key] = _coerce(pipeline, key, declared[key], value)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"pipeline {pipeline!r} params must be JSON values (numbers, strings, bools, lists, dicts): {exc}"
        ) from None
    return out


def _coerce(pipeline: str, key: str, default: Any, value: Any) -> Any:
    expected = type(default)

    def bad(why: str = "") -> ValidationError:
        return ValidationError(
            f"pipeline {pipeline!r} param {key!r}={value!r} is not {_article(expected.__name__)} "
            f"(its default is {default!r}){why}; pass e.g. --param {key}={json.dumps(default)}"
        )

    if default is None:
        return value
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if not math.isfinite(number):
            raise bad(" (NaN and infinity cannot be stored)")
        return number
    if expected is str:
        if isinstance(value, str):
            return value
        raise bad()
    if expected in (list, dict):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise bad(" (give it as JSON)") from None
        if isinstance(value, expected):
            return value
        raise bad()
    if isinstance(value, expected):
        return value
    raise bad()


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word
