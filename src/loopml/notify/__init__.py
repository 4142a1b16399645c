"""Notifications and webhooks (``lm.notify``): tell people and systems that something happened.

``notify(key, topic=..., title=...)`` stores one notification per key, ever, and queues one
delivery per active webhook whose topic prefixes match; ``notify.deliver`` jobs POST it (plain
JSON or Slack-compatible, HMAC-signed when the webhook has a secret) with retries and backoff.
Alerts notify on open and resolve; apps (moderation decisions) notify inside their own transaction.
"""

from loopml.notify.records import Delivery, Notification, Webhook
from loopml.notify.service import Notifier

__all__ = ["Delivery", "Notification", "Notifier", "Webhook"]
