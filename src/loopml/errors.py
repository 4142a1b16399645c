"""Exceptions a user can act on.

Every error loopml raises on purpose is a ``LoopmlError``: its message names what was wrong and how
to fix it, so the CLI and HTTP layers can show it as is instead of a traceback.
"""

from __future__ import annotations


class LoopmlError(Exception):
    """Base class; ``str(err)`` is the full, user-facing explanation."""

    #: HTTP status the API layer maps this error to.
    status_code: int = 400
    #: The one input at fault (``name``, ``alias`` ...), when there is one; the API reports it as ``field``.
    field: str | None = None

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        if field is not None:
            self.field = field


class ConfigError(LoopmlError):
    """A setting (URL, path, token) is missing or malformed."""


class NotFoundError(LoopmlError):
    """A named thing (dataset, version, model, alias, job, run ...) does not exist."""

    status_code = 404


class ConflictError(LoopmlError):
    """The request contradicts current state (duplicate name, protected alias, finished job)."""

    status_code = 409


class ValidationError(LoopmlError):
    """Input data does not satisfy a contract, signature or schema."""

    status_code = 422


class BackendUnavailableError(LoopmlError):
    """A production backend (PostgreSQL, Redis, S3) cannot be reached."""

    status_code = 503


class IntegrityError(LoopmlError):
    """Stored bytes no longer match their content hash."""

    status_code = 500


def did_you_mean(name: str, known: list[str] | tuple[str, ...] | set[str]) -> str:
    """Return a ' Known: ...' hint listing close or all known names, for NotFound messages."""
    import difflib

    names = sorted(known)
    if not names:
        return " None exist yet."
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f" Did you mean: {', '.join(close)}?"
    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
    return f" Known: {shown}."
