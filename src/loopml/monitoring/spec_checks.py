"""Input checks shared by the named, JSON-defined monitoring objects (SLOs and alert rules).

Both are stored as one validated JSON spec under a unique name, are built from HTTP bodies, CLI
flags and stored rows alike, and read timestamps back from SQLite (naive) or PostgreSQL (aware).
One copy of each check keeps their names, limits and messages the same, so a fix to one (say, a
longer name) cannot miss the other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from loopml.errors import ValidationError
from loopml.storage.metadata.base import utcnow

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$")
DESCRIPTION_MAX = 2000

__all__ = [
    "DESCRIPTION_MAX",
    "NAME_RE",
    "as_utc",
    "check_description",
    "check_name",
    "check_now",
    "check_same_name",
    "spec_fields",
]


def check_name(value: Any, field: str = "name") -> str:
    """A name that is safe in URLs, alert keys (``rule:<name>``) and CLI arguments."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(
            f"{field}={value!r}: use 1-100 characters, a letter first, then letters, digits and _ . : -",
            field=field,
        )
    return value


def check_description(value: Any) -> str:
    """Free text shown with the object and in the alerts it causes; bounded so a page stays readable."""
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
        raise ValidationError(
            f"description must be a string of at most {DESCRIPTION_MAX} characters", field="description"
        )
    return value


def spec_fields(data: Any, *, name: str | None, what: str) -> dict[str, Any]:
    """A copy of a JSON spec body (``what`` names it: ``an SLO spec``), with ``name`` filled in
    from the URL when the body leaves it out. The caller then checks the keys it knows."""
    if not isinstance(data, dict):
        raise ValidationError(f"{what} must be a JSON object; got {type(data).__name__}", field="body")
    out = dict(data)
    if name is not None:
        out.setdefault("name", name)
    return out


def check_same_name(spec_name: str, name: str, what: str) -> None:
    """Refuse an update whose spec names another object: renaming would orphan its history."""
    if spec_name != name:
        raise ValidationError(
            f"name={spec_name!r} differs from the {what} being updated ({name!r}); {what}s cannot be renamed",
            field="name",
        )


def as_utc(value: datetime) -> datetime:
    """A stored or given datetime as aware UTC (naive values are UTC, as the database stores them)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_now(value: Any, field: str = "now") -> datetime:
    """``value`` as aware UTC, or the current time when None (evaluations take ``now`` for tests
    and back-fills)."""
    if value is None:
        return utcnow()
    if not isinstance(value, datetime):
        raise ValidationError(f"{field} must be a datetime; got {value!r}", field=field)
    return as_utc(value)
