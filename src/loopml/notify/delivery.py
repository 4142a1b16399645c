"""One HTTP POST to a webhook and what its outcome means: delivered, retry later, or give up.

Kept apart from the service so the classification (which status codes are worth retrying) is in
one small place, and httpx is imported only by the processes that send.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

TIMEOUT_SECONDS = 5.0
#: Statuses where the receiver may succeed later (timeout, rate limit, its own failure).
RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_BODY_CHARS = 300

_client: Any = None
_client_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What one attempt did. ``retryable`` is meaningful only when not ``ok``."""

    ok: bool
    retryable: bool
    response_status: int | None
    error: str | None


def client() -> Any:
    """One pooled httpx client per process (thread-safe), so repeated deliveries reuse connections."""
    global _client
    with _client_lock:
        if _client is None:
            import httpx

            _client = httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)
        return _client


def classify(status: int, text: str = "") -> Outcome:
    """2xx delivered; 408/425/429/5xx retry; any other status (4xx, redirects) fails for good."""
    if 200 <= status < 300:
        return Outcome(True, False, status, None)
    snippet = " ".join(text.split())[:ERROR_BODY_CHARS]
    retryable = status in RETRYABLE_STATUSES or status >= 500
    hint = "" if retryable else _hint(status)
    return Outcome(False, retryable, status, f"HTTP {status}: {snippet or '(empty body)'}{hint}")


def _hint(status: int) -> str:
    if 300 <= status < 400:
        return "; redirects are not followed: update the webhook url to the final address"
    if status in (401, 403):
        return "; the receiver refused the request: check its token or the webhook secret"
    if status == 404:
        return "; the url does not exist on the receiver: check the webhook url"
    return "; the receiver rejected the request: fix the webhook, then retry the delivery"


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """POST ``body``; network errors (refused, reset, timeout) are retryable outcomes, never raised."""
    import httpx

    try:
        response = client().post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        return Outcome(False, True, None, f"timeout after {timeout:g}s: {type(exc).__name__}")
    except httpx.InvalidURL as exc:
        return Outcome(False, False, None, f"invalid url: {exc}; update the webhook url")
    except httpx.HTTPError as exc:
        return Outcome(False, True, None, f"{type(exc).__name__}: {exc}")
    return classify(response.status_code, response.text if response.status_code >= 300 else "")
