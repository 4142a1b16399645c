"""Request bodies and headers for webhooks: plain JSON, or a Slack-compatible message.

Pure functions (no I/O), so what a receiver gets can be checked without a network, and the bytes
that are signed are exactly the bytes that are sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from loopml.storage.metadata.notify import FORMAT_JSON, FORMAT_SLACK

#: Slack refuses a section text over 3000 characters and more than 10 fields per section.
SLACK_TEXT_MAX = 3000
SLACK_FIELDS_MAX = 10
SLACK_FIELD_MAX = 200

SIGNATURE_HEADER = "X-Loopml-Signature"
TOPIC_HEADER = "X-Loopml-Topic"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def json_payload(
    *,
    key: str,
    topic: str,
    title: str,
    body: str,
    recipient: str,
    data: Mapping[str, Any],
    created_at: datetime,
) -> dict[str, Any]:
    """The ``json`` format: the notification as stored, for receivers that act on it."""
    return {
        "key": key,
        "topic": topic,
        "title": title,
        "body": body,
        "recipient": recipient,
        "data": dict(data),
        "created_at": created_at.isoformat(),
    }


def _escape(text: str) -> str:
    # Slack mrkdwn treats &, < and > as control characters (links, mentions); escape them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(
    *, key: str, topic: str, title: str, body: str, recipient: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``slack`` format: ``text`` (the fallback shown in notifications) plus section blocks.

    Scalar ``data`` values become fields (up to Slack's 10), so an alert's severity or a request
    id is visible without opening anything; nested values are left to the JSON format.
    """
    head = f"*{_escape(title)}*"
    text = head + (f"\n{_escape(body)}" if body else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(head, SLACK_TEXT_MAX)}}
    ]
    if body:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_escape(body), SLACK_TEXT_MAX)}}
        )
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{_escape(k)}*\n{_escape(str(v))}", SLACK_FIELD_MAX)}
        for k, v in data.items()
        if isinstance(v, str | int | float | bool) or v is None
    ][:SLACK_FIELDS_MAX]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = f"{_escape(topic)} · {_escape(key)}" + (f" · for {_escape(recipient)}" if recipient else "")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, SLACK_TEXT_MAX)}]}
    )
    return {"text": _clip(text, 40_000), "blocks": blocks}


def render(fmt: str, **fields: Any) -> bytes:
    """The request body for webhook format ``fmt`` as UTF-8 JSON bytes (what is signed and sent)."""
    if fmt == FORMAT_JSON:
        payload = json_payload(**fields)
    elif fmt == FORMAT_SLACK:
        fields.pop("created_at", None)
        payload = slack_payload(**fields)
    else:  # the service refuses unknown formats; a row edited by hand still must not be sent wrongly
        raise ValueError(f"unknown webhook format {fmt!r}")
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver runs: constant-time check of ``X-Loopml-Signature`` against the body."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def headers(*, key: str, webhook: str, topic: str, body: bytes, secret: str | None) -> dict[str, str]:
    """Content type, ``Idempotency-Key: <key>/<webhook>``, the topic and, with a secret, the signature.

    The idempotency key is the same on every attempt of one delivery, so a receiver that stores
    the keys it has seen can drop the one resend a crash between POST and bookkeeping may cause.
    """
    out = {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: f"{key}/{webhook}",
        TOPIC_HEADER: topic,
        "User-Agent": "loopml-webhooks/1",
    }
    if secret:
        out[SIGNATURE_HEADER] = sign(secret, body)
    return out
