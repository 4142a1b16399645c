"""``Alerts`` (``lm.alerts``): fire, resolve and list alerts, each change audited in its transaction."""

from __future__ import annotations

import builtins
from typing import Any

from loopml.alerts import checks
from loopml.alerts.records import Alert, alert_from_row
from loopml.context import Context
from loopml.errors import ConflictError, NotFoundError
from loopml.storage.metadata import alerts as a
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

#: Audit events use the alert *key* as subject, so one query shows every incident of a key.
SUBJECT = "alert"


class Alerts:
    """The alerts service. Stateless apart from the context, so one instance serves all threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def fire(
        self,
        key: str,
        *,
        severity: str = "warning",
        title: str,
        detail: str = "",
        source: str = "",
        data: dict[str, Any] | None = None,
        actor: str = "system",
    ) -> Alert:
        """Report a problem. While an alert with ``key`` is open, firing again updates that alert
        (``fire_count`` + 1, ``last_fired_at``, the newest severity and title; detail, source and
        data when given) instead of opening another, so a check may fire on every run without
        flooding anyone.
        """
        key = checks.name("key", key, a.KEY_MAX)
        severity = checks.severity(severity)
        title = checks.text("title", title, a.TITLE_MAX, required=True)
        detail = checks.text("detail", detail, checks.DETAIL_MAX)
        source = checks.optional_name("source", source, a.SOURCE_MAX)
        payload = None if data is None else checks.data(data)
        actor = checks.name("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            row = a.upsert_open(
                session,
                key=key,
                severity=severity,
                title=title,
                detail=detail,
                source=source,
                data=payload,
                now=utcnow(),
            )
            alert = alert_from_row(row)
            if alert.fire_count == 1:  # a new incident, not a repeat of an open one
                _notify(self.ctx, session, alert, "opened", detail)
            record_event(
                session,
                a.EVENT_FIRED,
                SUBJECT,
                key,
                actor=actor,
                reason=title,
                data={"alert_id": alert.id, "severity": severity, "fire_count": alert.fire_count},
            )
        return alert

    def resolve(self, key: str, *, reason: str = "", actor: str = "system") -> Alert | None:
        """Close the open alert with ``key``; None when none is open (resolving twice is harmless,
        so a check can call this on every healthy run)."""
        key = checks.name("key", key, a.KEY_MAX)
        reason = checks.text("reason", reason, checks.REASON_MAX)
        actor = checks.name("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            row = a.resolve_open(session, now=utcnow(), key=key)
            if row is None:
                return None
            alert = alert_from_row(row)
            self._audit_resolved(session, alert, reason, actor)
        return alert

    def resolve_id(self, alert_id: int, *, reason: str = "", actor: str = "system") -> Alert:
        """Close one alert by id (what an operator clicks). Unlike ``resolve``, an unknown id is a
        ``NotFoundError`` and an alert resolved already is a ``ConflictError``: a person acting on
        a specific alert should learn that it changed under them."""
        alert_id = checks.alert_id(alert_id)
        reason = checks.text("reason", reason, checks.REASON_MAX)
        actor = checks.name("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            row = a.resolve_open(session, now=utcnow(), alert_id=alert_id)
            if row is None:
                current = a.get_alert(session, alert_id)
                if current is None:
                    raise self._not_found(alert_id)
                raise ConflictError(
                    f"alert {alert_id} ({current.key}) was already resolved at "
                    f"{alert_from_row(current).resolved_at:%Y-%m-%d %H:%M:%S} UTC; nothing to do",
                    field="alert_id",
                )
            alert = alert_from_row(row)
            self._audit_resolved(session, alert, reason, actor)
        return alert

    def get(self, alert_id: int) -> Alert:
        alert_id = checks.alert_id(alert_id)
        with self.ctx.db.session() as session:
            row = a.get_alert(session, alert_id)
        if row is None:
            raise self._not_found(alert_id)
        return alert_from_row(row)

    def list(
        self,
        status: str | None = None,
        severity: str | None = None,
        source: str | None = None,
        limit: int = 100,
        *,
        key: str | None = None,
    ) -> builtins.list[Alert]:
        """Alerts, most recently fired first, optionally filtered."""
        status = None if status is None else checks.status(status)
        severity = None if severity is None else checks.severity(severity)
        source = None if source is None else checks.name("source", source, a.SOURCE_MAX)
        key = None if key is None else checks.name("key", key, a.KEY_MAX)
        limit = checks.limit(limit)
        with self.ctx.db.session() as session:
            rows = a.list_alerts(
                session, status=status, severity=severity, source=source, key=key, limit=limit
            )
        return [alert_from_row(row) for row in rows]

    def get_open(self, key: str) -> Alert | None:
        """The open alert for ``key``, if any (e.g. to skip expensive evidence gathering on repeats)."""
        found = self.list(status=a.OPEN, key=key, limit=1)
        return found[0] if found else None

    def _audit_resolved(self, session: Any, alert: Alert, reason: str, actor: str) -> None:
        _notify(self.ctx, session, alert, "resolved", reason)
        record_event(
            session,
            a.EVENT_RESOLVED,
            SUBJECT,
            alert.key,
            actor=actor,
            reason=reason or None,
            data={"alert_id": alert.id, "fire_count": alert.fire_count},
        )

    @staticmethod
    def _not_found(alert_id: int) -> NotFoundError:
        return NotFoundError(
            f"alert {alert_id} does not exist; `loopml alerts list` shows the alerts", field="alert_id"
        )


def _notify(ctx: Context, session: Any, alert: Alert, what: str, body: str) -> None:
    """Notify ``alert.opened`` / ``alert.resolved`` in the alert's own transaction: exactly once per
    incident and transition (the key is per alert id), and never for a change that rolled back."""
    from loopml.notify import Notifier

    prefix = f"[{alert.severity}] " + ("resolved: " if what == "resolved" else "")
    Notifier(ctx).notify(
        f"alert:{alert.id}:{what}",
        topic=f"alert.{what}",
        title=(prefix + alert.title)[: a.TITLE_MAX],
        body=body,
        data={"alert_id": alert.id, "key": alert.key, "severity": alert.severity, "source": alert.source},
        session=session,
    )
