"""Jinja filters that format numbers, durations and timestamps the same way on every page."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment


def fmt_num(value: Any, digits: int = 4) -> str:
    """Compact numbers: ints with thousands separators, floats to ``digits`` significant digits."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(number)
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.{digits}g}"


def fmt_seconds(value: Any) -> str:
    """``0.0123`` -> ``12 ms``, ``75`` -> ``1m 15s``: durations people read at a glance."""
    if value is None:
        return "—"
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_when(value: Any) -> str:
    """ISO timestamps as ``2024-05-01 12:03:04 UTC`` (one zone everywhere, no browser guessing)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def fmt_pct(value: Any, digits: int = 1) -> str:
    """``0.1234`` -> ``12.3 %``: shares and error rates (WAPE, coverage) as percentages."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "—"
    return f"{number * 100:.{digits}f} %"


def fmt_money(value: Any) -> str:
    """Whole currency units with thousands separators (``1234567.8`` -> ``1,234,568``)."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "—"
    return f"{number:,.0f}"


def install_filters(env: Environment) -> None:
    env.filters["pct"] = fmt_pct
    env.filters["money"] = fmt_money
    env.filters["num"] = fmt_num
    env.filters["seconds"] = fmt_seconds
    env.filters["when"] = fmt_when
