"""Model references and names: ``name@alias``, ``name/N``, ``name`` (latest), and what names may look like."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from loopml.errors import ValidationError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest"})


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    number: int | None = None  # None with alias None means "latest"

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.number}" if self.number is not None else self.name


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ValidationError(
            f"model name {name!r} is invalid: use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit",
            field="name",
        )
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS_NAME.match(alias):
        raise ValidationError(
            f"alias {alias!r} is invalid: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter "
            "(e.g. champion, challenger, canary-eu)",
            field="alias",
        )
    if alias in RESERVED_ALIASES:
        raise ValidationError(
            f"alias {alias!r} is reserved (it means the newest version); pick another name", field="alias"
        )
    return alias


def version_number(version: Any, what: str = "version") -> int:
    """Accept 3, "3" or "v3"; anything else is a ValidationError naming the field."""
    if isinstance(version, bool):
        raise ValidationError(f"{what} must be a version number like 3; got {version!r}")
    if isinstance(version, int):
        number = version
    elif isinstance(version, str) and re.fullmatch(r"v?\d+", version.strip()):
        number = int(version.strip().lstrip("v"))
    else:
        raise ValidationError(f"{what} must be a version number like 3; got {version!r}")
    if number < 1:
        raise ValidationError(f"{what} must be >= 1; got {number}")
    return number


def parse_ref(ref: Any) -> ModelRef:
    """``fraud@champion`` -> alias ref, ``fraud/3`` -> version 3, ``fraud`` or ``fraud/latest`` -> newest."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError(f"model reference {ref!r} is invalid; use 'name@alias', 'name/N' or 'name'")
    ref = ref.strip()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if not alias:
            raise ValidationError(f"model reference {ref!r} has an empty alias; use 'name@champion'")
        if alias == "latest":
            return ModelRef(check_model_name(name))
        return ModelRef(check_model_name(name), alias=check_alias(alias))
    if "/" in ref:
        name, _, number = ref.partition("/")
        if number == "latest":
            return ModelRef(check_model_name(name))
        return ModelRef(check_model_name(name), number=version_number(number, f"version in {ref!r}"))
    return ModelRef(check_model_name(ref))
