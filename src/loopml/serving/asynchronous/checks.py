"""Input checks of the asynchronous-request service: each raises ``ValidationError`` naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from loopml.errors import ValidationError
from loopml.storage.metadata import async_requests as ar

#: Kinds and statuses are identifiers: they end up in URLs, metrics labels and topic names.
IDENT = re.compile(r"^[a-z][a-z0-9_.-]*$")
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
#: ``meta`` and ``result`` are small JSON objects: the input itself lives in the artifact store.
JSON_MAX = 64 * 1024
ERROR_MAX = 10_000
TAGS_MAX = 100
LIMIT_MAX = 1000


def ident(field: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not IDENT.match(value) or len(value) > max_len:
        raise ValidationError(
            f"{field} must be an identifier of 1-{max_len} characters from a-z, 0-9, '_', '.', '-' "
            f"starting with a letter (e.g. 'moderation'); got {value!r}",
            field=field,
        )
    return value


def statuses(field: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or isinstance(items, bytes) or not items:
        raise ValidationError(
            f"{field} must be a status or a non-empty list of statuses; got {value!r}", field=field
        )
    return [ident(field, item, ar.STATUS_MAX) for item in items]


def request_id(value: Any) -> str:
    if not isinstance(value, str) or not REQUEST_ID.match(value):
        raise ValidationError(
            f"request id must be 32 lowercase hex characters (as returned by submit); got {value!r}",
            field="id",
        )
    return value


def json_object(field: str, value: Any, *, allow_none: bool = False) -> dict[str, Any] | None:
    """A JSON object without NaN/inf, at most 64 KiB encoded (round-tripped, so tuples become lists)."""
    if value is None:
        if allow_none:
            return None
        return {}
    if not isinstance(value, dict):
        raise ValidationError(
            f"{field} must be a JSON object (dict); got {type(value).__name__}", field=field
        )
    _finite(field, value)  # before encoding: orjson writes NaN as null, silently
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise ValidationError(f"{field} is not JSON-serialisable: {exc}", field=field) from None
    if len(encoded) > JSON_MAX:
        raise ValidationError(
            f"{field} is {len(encoded)} bytes encoded; keep it under {JSON_MAX} (store large data as an artifact)",
            field=field,
        )
    return orjson.loads(encoded)


def _finite(field: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{field} contains NaN or infinity; JSON cannot hold it", field=field)
    if isinstance(value, dict):
        for item in value.values():
            _finite(field, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _finite(field, item)


def tags(value: Any) -> list[str]:
    """Distinct tags in first-seen order (a repeated tag is harmless, not an error)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(f"tags must be a list of strings, e.g. ['cat']; got {value!r}", field="tags")
    if len(value) > TAGS_MAX:
        raise ValidationError(f"tags has {len(value)} items; at most {TAGS_MAX}", field="tags")
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > ar.TAG_MAX or tag != tag.strip():
            raise ValidationError(
                f"each tag must be a non-empty string of at most {ar.TAG_MAX} characters without "
                f"surrounding spaces; got {tag!r}",
                field="tags",
            )
        if tag not in out:
            out.append(tag)
    return out


def optional_text(field: str, value: Any, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValidationError(
            f"{field} must be a non-empty string of at most {max_len} characters; got {value!r}", field=field
        )
    return value


def digest(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^sha256:[0-9a-f]{64}$", value):
        raise ValidationError(
            f"input_digest must be an artifact digest 'sha256:<64 hex>' (from lm.ctx.artifacts.put_bytes); got {value!r}",
            field="input_digest",
        )
    return value


def integer(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            f"{field} must be a whole number between {low} and {high}; got {value!r}", field=field
        )
    return value


def before(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"before must be an ISO 8601 timestamp, e.g. 2026-12-01T10:00:00+00:00; got {value!r}",
                field="before",
            ) from None
    if not isinstance(value, datetime):
        raise ValidationError(f"before must be a datetime; got {value!r}", field="before")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
