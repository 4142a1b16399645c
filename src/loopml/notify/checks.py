"""Input checks for the notifier: every error is a ``ValidationError`` naming the field and the fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from loopml.errors import ValidationError
from loopml.storage.metadata import notify as n

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
URL_MAX = 2_000
BODY_MAX = 20_000
ACTOR_MAX = 255
MAX_ID = 2**63 - 1
LIMIT_MAX = 1_000
MAX_TOPICS = 50
#: Notifications carry ids and a few numbers for the receiver, not datasets.
DATA_MAX_BYTES = 64 * 1024


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field)


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(field, f"{value!r} is not a {field}; use one of {', '.join(choices)}")
    return value


def _max_len(field: str, value: str, max_len: int) -> str:
    if len(value) > max_len:
        raise _fail(field, f"is {len(value)} characters long; the limit is {max_len}")
    return value


def _one_word(field: str, value: str, example: str) -> str:
    """Printable and free of spaces: URLs and topics are matched and sent as they are."""
    if not value.isprintable() or any(c.isspace() for c in value):
        raise _fail(field, f"{value!r} contains spaces or control characters; {example}")
    return value


def webhook_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise _fail(
            field,
            f"{value!r} is not a webhook name; use a letter then up to 63 letters, digits, '_' or '-' "
            "(e.g. ops-slack)",
        )
    return value


def url(value: Any) -> str:
    """An absolute http(s) URL with a host: anything else could never be POSTed to."""
    if not isinstance(value, str) or not value.strip():
        raise _fail("url", f"{value!r} is not a URL; use http(s)://host/path")
    _max_len("url", value, URL_MAX)
    _one_word("url", value, "percent-encode them")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise _fail("url", f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise _fail("url", f"{value!r} has scheme {parts.scheme!r}; webhooks are http:// or https:// URLs")
    if not parts.hostname:
        raise _fail("url", f"{value!r} has no host; use http(s)://host/path")
    return value


def webhook_format(value: Any) -> str:
    return _choice("format", value, n.WEBHOOK_FORMATS)


def topic(value: Any, field: str = "topic") -> str:
    """A dotted topic such as ``alert.opened``: one printable word, no spaces."""
    if not isinstance(value, str) or not value or len(value) > n.TOPIC_MAX:
        raise _fail(
            field, f"{value!r}: use a non-empty topic of at most {n.TOPIC_MAX} characters, e.g. alert.opened"
        )
    return _one_word(field, value, "use e.g. moderation.rejected")


def topics(value: Any) -> list[str]:
    """Topic prefixes (``["*"]`` = all). A lone string is one prefix, not a list of characters."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, dict | bytes):
        raise _fail("topics", f"{value!r}: use a list of topic prefixes, e.g. ['alert.', 'moderation.']")
    out: list[str] = []
    for item in value:
        item = topic(item, "topics")
        if item not in out:
            out.append(item)
    if not out:
        raise _fail("topics", "is empty; use ['*'] for every topic or prefixes such as ['alert.']")
    if len(out) > MAX_TOPICS:
        raise _fail("topics", f"has {len(out)} entries; the limit is {MAX_TOPICS}")
    return out


def secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > n.SECRET_MAX or not value.isprintable():
        raise _fail(
            "secret", f"use a printable string of 1 to {n.SECRET_MAX} characters (or None for no signature)"
        )
    return value


def flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, f"{value!r}: use true or false")
    return value


def line(field: str, value: Any, max_len: int, *, required: bool = True) -> str:
    """A one-line identifier (key, recipient, actor)."""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(field, f"{value!r}: use a non-empty string")
    if not value.isprintable():
        raise _fail(
            field, f"{value!r} contains control characters (newline, tab ...); use one printable line"
        )
    return _max_len(field, value, max_len)


def text(field: str, value: Any, max_len: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _fail(field, "is empty; say in a few words what happened")
    return _max_len(field, value, max_len)


def data(value: Any) -> dict[str, Any]:
    """A JSON object that survives the database and the webhook body unchanged."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail("data", "use a dict with string keys and JSON values")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _fail(
            "data",
            f"is not JSON-serialisable ({exc}); pass numbers, strings, lists and dicts (no NaN, no datetimes)",
        ) from None
    if len(encoded.encode()) > DATA_MAX_BYTES:
        raise _fail("data", f"is {len(encoded.encode())} bytes as JSON; the limit is {DATA_MAX_BYTES}")
    return value


def record_id(field: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise _fail(field, f"{value!r}: use the positive integer id shown by {hint}")
    return value


def limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT_MAX:
        raise _fail("limit", f"{value!r}: use an integer from 1 to {LIMIT_MAX}")
    return value


def delivery_status(value: Any) -> str:
    return _choice("status", value, n.DELIVERY_STATUSES)


def optional_flag(field: str, value: Any) -> bool | None:
    return None if value is None else flag(field, value)
