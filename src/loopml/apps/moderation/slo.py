"""The moderation SLO: an uploader hears the decision within 1 hour. Alert well before that.

The signal is queue age, not queue depth: 500 waiting uploads are fine with 8 workers and a
breach with none, but "the oldest upload has waited 31 minutes" means the same thing everywhere.
Two ages are read, and the larger counts:

- the oldest **job** due in the moderation queue (``lm.jobs.oldest_age_seconds``): work no worker
  has picked up (no workers, too few, or jobs waiting out a retry backoff);
- the oldest **request** still ``screening`` (``lm.async_requests.oldest_age_seconds``): catches
  what the job view cannot, e.g. a job that died after its retries while the upload still waits.

``moderation.queue_age`` fires ``warning`` at 30 minutes and ``critical`` at 45, both *before* the
oldest upload reaches the 1-hour SLO, so a person (or the autoscaler) has 15-30 minutes to act; it
is resolved as soon as the age is back under the warning line. Firing again while open only
updates the alert, so the check runs every minute as the cron pipeline ``moderation.slo``
(add ``loopml.apps.moderation.slo`` to ``pipeline_modules`` for the scheduler to see it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import loopml
from loopml.apps.moderation.config import ModerationConfig, load_config
from loopml.apps.moderation.uploads import KIND, SCREENING
from loopml.checks import check_number
from loopml.errors import ValidationError
from loopml.pipelines import Pipeline, register, step

ALERT_KEY = "moderation.queue_age"
PIPELINE = "moderation.slo"
SLO_SECONDS = 3600.0
WARNING_AT = 30 * 60.0
CRITICAL_AT = 45 * 60.0
ACTOR = "moderation.slo"


@dataclass(frozen=True)
class QueueAge:
    """One check: the ages read (seconds, None = nothing waiting), the severity and what was done
    to the alert (``fired``/``resolved``/None)."""

    job_age_seconds: float | None
    request_age_seconds: float | None
    severity: str | None
    action: str | None
    alert_id: int | None = None

    @property
    def age_seconds(self) -> float:
        return max(self.job_age_seconds or 0.0, self.request_age_seconds or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "age_seconds": self.age_seconds}


def severity_for(
    age_seconds: float, *, warning_at: float = WARNING_AT, critical_at: float = CRITICAL_AT
) -> str | None:
    """``critical`` at or over ``critical_at``, ``warning`` at or over ``warning_at``, else None."""
    check_number(age_seconds, "age_seconds", low=0)
    check_number(warning_at, "warning_at", low=0, low_open=True)
    check_number(critical_at, "critical_at", low=0, low_open=True)
    if critical_at < warning_at:
        raise ValidationError(
            f"critical_at ({critical_at:.0f} s) is below warning_at ({warning_at:.0f} s)", field="critical_at"
        )
    if age_seconds >= critical_at:
        return "critical"
    if age_seconds >= warning_at:
        return "warning"
    return None


def _shift(age: float | None, now: datetime | None) -> float | None:
    """An age read at the real clock, as it is at ``now`` (the database reads ages at its own now)."""
    if age is None or now is None:
        return age
    return max(0.0, age + (now - datetime.now(tz=UTC)).total_seconds())


def check_queue_age(
    lm: Any,
    cfg: ModerationConfig | None = None,
    *,
    now: datetime | None = None,
    warning_at: float = WARNING_AT,
    critical_at: float = CRITICAL_AT,
) -> QueueAge:
    """Read the moderation queue age and fire or resolve ``moderation.queue_age`` accordingly.

    ``now`` (timezone-aware) evaluates the ages at another moment, e.g. a replay; ``warning_at``
    and ``critical_at`` (seconds) let a time-compressed benchmark scale the thresholds.
    """
    cfg = load_config(lm) if cfg is None else cfg
    if not isinstance(cfg, ModerationConfig):
        raise ValidationError(f"cfg must be a ModerationConfig, got {type(cfg).__name__}", field="cfg")
    if now is not None and (not isinstance(now, datetime) or now.tzinfo is None):
        raise ValidationError(
            f"now must be a timezone-aware datetime, e.g. datetime.now(tz=UTC); got {now!r}", field="now"
        )
    job_age = _shift(lm.jobs.oldest_age_seconds(cfg.queue), now)
    request_age = _shift(lm.async_requests.oldest_age_seconds(KIND, SCREENING), now)
    age = max(job_age or 0.0, request_age or 0.0)
    severity = severity_for(age, warning_at=warning_at, critical_at=critical_at)
    if severity is None:
        resolved = lm.alerts.resolve(
            ALERT_KEY,
            reason=f"oldest upload waits {age / 60:.1f} min, under {warning_at / 60:.0f} min",
            actor=ACTOR,
        )
        return QueueAge(job_age, request_age, None, "resolved" if resolved else None)
    alert = lm.alerts.fire(
        ALERT_KEY,
        severity=severity,
        title=f"Moderation queue: the oldest upload has waited {age / 60:.0f} min (SLO: decided within 60 min)",
        detail=(
            f"oldest queued job in {cfg.queue!r}: {_minutes(job_age)}; oldest upload still screening: "
            f"{_minutes(request_age)}. Check the workers (`loopml jobs stats`), add workers, or look "
            f"for dead jobs (`loopml jobs list --queue {cfg.queue} --status dead`)."
        ),
        source=PIPELINE,
        data={"job_age_seconds": job_age, "request_age_seconds": request_age, "queue": cfg.queue},
        actor=ACTOR,
    )
    return QueueAge(job_age, request_age, severity, "fired", alert.id)


def _minutes(age: float | None) -> str:
    return "none" if age is None else f"{age / 60:.1f} min"


@step(cache=False)
def queue_age(now: str, lm: loopml.Loopml) -> dict:
    """The scheduled check; ``now`` (ISO 8601 with offset, or "") overrides the clock for replays."""
    moment = None
    if now:
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            raise ValidationError(
                f"now={now!r} is not an ISO datetime, e.g. 2026-12-03T18:30:00+00:00", field="now"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return check_queue_age(lm, now=moment).to_dict()


SLO_PIPELINE = register(
    Pipeline(
        PIPELINE,
        steps=[queue_age],
        schedule="* * * * *",
        params={"now": ""},
        description="Every minute: alert moderation.queue_age at 30 min (warning) / 45 min (critical) before the 1-hour SLO",
    ),
    module=__name__,
)
