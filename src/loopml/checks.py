"""Shared input checks that raise ``ValidationError`` naming the field at fault.

Configs, endpoint specs and HTTP bodies all refuse the same kinds of bad input (a bool where a count
belongs, NaN, a number out of range, an unknown key); checking them in one place keeps the messages
alike everywhere and keeps a fix to one rule (say, refusing ``True`` as ``1``) from missing a copy.
Every message reads ``<field> must be <what>; got <value>`` so a user can fix it without the docs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from loopml.errors import ValidationError, did_you_mean

T = TypeVar("T")

__all__ = ["check_actor", "check_choice", "check_keys", "check_number", "check_reason"]


def _fail(field: str, what: str, value: Any, hint: str) -> ValidationError:
    return ValidationError(
        f"{field} must be {what}; got {value!r}" + (f"; {hint}" if hint else ""), field=field
    )


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"between {low} and {high}"
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_number(
    value: Any,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    whole_floats: bool = False,
    hint: str = "",
) -> Any:
    """Return ``value`` as a finite ``float`` (or ``int`` with ``integer=True``) within the bounds.

    Bools are refused although Python counts them as ints: ``True`` for a count is always a
    mistake. ``whole_floats`` lets ``3.0`` stand for ``3`` (JSON clients send that); without it an
    integer setting must already be an ``int`` so a stored config never holds ``3.0``. ``low_open``
    / ``high_open`` exclude the bound itself; ``hint`` is appended to the message.
    """
    if integer:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(field, "a whole number", value, hint)
        if not isinstance(value, int):
            if not (whole_floats and math.isfinite(value) and float(value).is_integer()):
                raise _fail(field, "a whole number", value, hint)
            value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(field, "a finite number", value, hint)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise _fail(field, _bounds(low, high, low_open, high_open), value, hint)
    return value if integer else float(value)


def check_choice(value: T, field: str, choices: Collection[Any], *, hint: str = "") -> T:
    """Return ``value`` if it is one of ``choices``; the message lists them all (they are few)."""
    if value not in choices:
        raise _fail(field, f"one of {', '.join(repr(c) for c in choices)}", value, hint)
    return value


def check_keys(
    data: Mapping[Any, Any] | Iterable[Any],
    allowed: Collection[str],
    *,
    where: str = "",
    owner: str = "",
    noun: str = "field",
    root: str = "body",
    required: Iterable[str] = (),
) -> None:
    """Refuse keys not in ``allowed`` (with a did-you-mean hint) and report missing ``required`` ones.

    ``where`` is the path of the object the keys sit in (``policy``, ``items[2]``): it prefixes
    the reported field, and stands in for a key too odd (empty, not a string) to be a field name
    (``root`` does at the top level). ``owner`` names the object for the reader (``the demand config``); it defaults to ``where``.
    """
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in allowed:
            path = f"{prefix}{key}" if isinstance(key, str) and key.strip() else (where or root)
            raise ValidationError(
                f"{path}: unknown {noun} {key!r} for {owner or where or 'this object'}."
                + did_you_mean(str(key), list(allowed)),
                field=path,
            )
    for key in required:
        if key not in data:
            raise ValidationError(f"{prefix}{key} is required", field=f"{prefix}{key}")


def check_actor(actor: Any, *, max_len: int = 255) -> str:
    """Who made a change, as stored in the audit log (stripped; empty is refused: every change has an author)."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("actor must be a non-empty string naming who acts", field="actor")
    if len(actor) > max_len:
        raise ValidationError(f"actor is longer than {max_len} characters", field="actor")
    return actor.strip()


def check_reason(reason: Any, *, max_len: int = 2000, required: bool = False) -> str | None:
    """Why a change was made (stripped; blank means none, refused when ``required``)."""
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        if required:
            raise ValidationError("reason is required: say why, it is kept in the audit log", field="reason")
        return None
    if not isinstance(reason, str):
        raise ValidationError(f"reason must be a string; got {type(reason).__name__}", field="reason")
    if len(reason) > max_len:
        raise ValidationError(f"reason is longer than {max_len} characters", field="reason")
    return reason.strip()
