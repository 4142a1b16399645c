"""Input checks for the alerts service: each error names the field and how to fix it."""

from __future__ import annotations

import json
from typing import Any

from loopml.errors import ValidationError
from loopml.storage.metadata import alerts as a

#: Largest id a request may carry: what a SQL BIGINT holds (bigger ones cannot name a stored alert).
MAX_ID = 2**63 - 1
DETAIL_MAX = 20_000
REASON_MAX = 2_000
ACTOR_MAX = 255
#: Serialised size limit of ``data``: alerts carry ids and a few numbers, not datasets.
DATA_MAX_BYTES = 64 * 1024
LIMIT_MAX = 1_000


def name(field: str, value: Any, max_len: int) -> str:
    """A required one-line identifier (key, actor): non-empty, printable, within the column size."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field}={value!r}: use a non-empty string", field=field)
    if not value.isprintable():
        raise ValidationError(
            f"{field}={value!r} contains control characters (newline, tab ...); use one printable line",
            field=field,
        )
    return _max(field, value, max_len)


def text(field: str, value: Any, max_len: int, *, required: bool = False) -> str:
    """Free text (title, detail, reason); ``required`` rejects an empty or blank value."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)
    if required and not value.strip():
        raise ValidationError(f"{field} is empty; say in a few words what is wrong", field=field)
    return _max(field, value, max_len)


def optional_name(field: str, value: Any, max_len: int) -> str:
    """A one-line label that may be empty (source)."""
    if value == "":
        return value
    return name(field, value, max_len)


def choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(f"{field}={value!r}: use one of {', '.join(allowed)}", field=field)
    return value


def data(value: Any) -> dict[str, Any]:
    """A JSON object that survives the round trip through the database unchanged."""
    if not isinstance(value, dict):
        raise ValidationError(f"data must be a dict of JSON values, got {type(value).__name__}", field="data")
    bad_keys = [k for k in value if not isinstance(k, str)]
    if bad_keys:
        raise ValidationError(
            f"data keys must be strings, got {bad_keys[:3]!r}; JSON objects only have string keys",
            field="data",
        )
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"data is not JSON-serialisable ({exc}); pass plain numbers, strings, lists and dicts "
            "(no NaN/inf, datetimes as ISO strings)",
            field="data",
        ) from None
    if len(encoded.encode()) > DATA_MAX_BYTES:
        raise ValidationError(
            f"data is {len(encoded.encode())} bytes as JSON; the limit is {DATA_MAX_BYTES}. "
            "Store large evidence as a dataset or artifact and put its id in data",
            field="data",
        )
    return value


def alert_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ValidationError(
            f"alert_id={value!r}: use the positive integer id shown by `loopml alerts list`",
            field="alert_id",
        )
    return value


def limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT_MAX:
        raise ValidationError(f"limit={value!r}: use an integer from 1 to {LIMIT_MAX}", field="limit")
    return value


def severity(value: Any) -> str:
    return choice("severity", value, a.SEVERITIES)


def status(value: Any) -> str:
    return choice("status", value, a.STATUSES)


def _max(field: str, value: str, max_len: int) -> str:
    if len(value) > max_len:
        raise ValidationError(f"{field} is {len(value)} characters long; the limit is {max_len}", field=field)
    return value
