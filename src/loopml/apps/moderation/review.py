"""Human review: the queue of uploads the screener held, operator decisions, labels and capacity.

Why it works this way:

- The queue *is* the set of moderation requests in status ``review`` (``lm.async_requests``), so a
  held upload cannot be lost between the screener and the operator, and the screener and a human
  can never both decide: a decision is a compare-and-set transition ``review -> published |
  rejected`` that carries the uploader's notification (key ``moderation.review:<id>``) in the same
  transaction. Deciding twice is a ``ConflictError`` naming the current status.
- Every decision is a training label. The request row is the source of truth (who, when, what);
  the dataset ``moderation_labels`` is *derived* from it, one partition per upload day, rebuilt
  from the decided requests of that day. Rebuilding (rather than appending one row) makes the
  export idempotent and self-healing: a decision whose export was interrupted, or two operators
  exporting the same day at once, are both repaired by the next export of that day, and the
  retraining pipeline exports before it reads.
- The label is also sent to the inference log as feedback on the screening request, so the A/B
  analysis of the endpoint (``analyse_ab``) sees reviewed outcomes per arm.
- Capacity: the seeds ask that the flagged volume fit what operators can review in a week.
  ``capacity_report`` counts, per ISO week, the uploads the screener held for review against the
  configured operator capacity, plus the age of the oldest waiting item (the night-time backlog
  behind "wrongly blocked" complaints).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from loopml import Loopml
from loopml.checks import check_number
from loopml.data import Column, Contract
from loopml.errors import ConflictError, LoopmlError, NotFoundError, ValidationError

log = logging.getLogger("loopml.apps.moderation.review")

KIND = "moderation"
REVIEW = "review"
PUBLISHED = "published"
REJECTED = "rejected"
DECIDED = (PUBLISHED, REJECTED)
DECISIONS = ("approve", "reject")
LABELS_DATASET = "moderation_labels"
LABEL_COLUMNS = ["request_id", "image_digest", "has_face", "source", "reviewer", "decided_at", "week"]
NOTE_MAX = 2000
ACTOR_MAX = 200
PAGE = 500
QUEUE_MAX = 1000

LABELS_CONTRACT = Contract(
    columns=[
        Column("request_id", "str", description="the moderation request (upload) id"),
        Column(
            "image_digest", "str", description="sha256 digest of the uploaded image in the artifact store"
        ),
        Column("has_face", "int", min=0, max=1, description="1 = prohibited (a human face), 0 = allowed"),
        Column("source", "str", allowed=["review"], description="where the label came from"),
        Column("reviewer", "str", description="the operator who decided"),
        Column("decided_at", "datetime", description="when the operator decided (UTC)"),
        Column("week", "str", description="ISO Monday of the upload's week, e.g. 2026-11-30"),
    ],
    unique_key=("request_id",),
    freshness_column="decided_at",
)


@dataclass(frozen=True)
class ReviewItem:
    """One upload waiting for an operator, with what the screener saw."""

    id: str
    title: str
    description: str
    tags: list[str]
    uploader: str
    created_at: datetime | None
    age_seconds: float
    scores: dict[str, Any]
    face_score: float | None
    model: str | None
    version: int | None
    reason: str
    boxes: list[Any]
    width: int | None
    height: int | None
    image_url: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass(frozen=True)
class ReviewDecision:
    """What ``decide`` did: the new status, the label it produced and where it was recorded."""

    id: str
    status: str
    decision: str
    reviewer: str
    note: str
    has_face: int
    decided_at: datetime
    feedback_sent: bool
    labels_exported: bool

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decided_at"] = self.decided_at.isoformat()
        return out


@dataclass(frozen=True)
class WeekLoad:
    """One ISO week: uploads, what the screener did with them and what operators decided."""

    week: str
    uploads: int
    flagged: int
    auto_rejected: int
    published: int
    reviewed: int
    pending: int
    capacity: int
    within_capacity: bool


@dataclass(frozen=True)
class CapacityReport:
    """Flagged volume per week against the operators' weekly capacity, and the queue's age."""

    capacity_per_week: int
    weeks: list[WeekLoad] = field(default_factory=list)
    queue_depth: int = 0
    oldest_age_seconds: float | None = None

    @property
    def within_capacity(self) -> bool:
        return all(w.within_capacity for w in self.weeks)

    @property
    def peak_flagged(self) -> int:
        return max((w.flagged for w in self.weeks), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity_per_week": self.capacity_per_week,
            "weeks": [asdict(w) for w in self.weeks],
            "queue_depth": self.queue_depth,
            "oldest_age_seconds": self.oldest_age_seconds,
            "within_capacity": self.within_capacity,
            "peak_flagged": self.peak_flagged,
        }


# -- helpers ----------------------------------------------------------------------------------------
def week_of(moment: datetime | date) -> str:
    """ISO date of the Monday of ``moment``'s week (UTC): the week id used in labels and reports."""
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    return (day - timedelta(days=day.weekday())).isoformat()


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _text(value: Any, field_name: str, max_len: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field_name} must be a string, got {type(value).__name__}", field=field_name)
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{field_name} is required (who decides, e.g. 'ops-kim')", field=field_name)
    if len(value) > max_len:
        raise ValidationError(
            f"{field_name} is {len(value)} characters; at most {max_len} are allowed", field=field_name
        )
    return value


def parse_decision(value: Any) -> bool:
    """``"approve"`` -> True, ``"reject"`` -> False; anything else is a 422 naming ``decision``."""
    if value not in DECISIONS:
        raise ValidationError(
            f"decision={value!r}: use 'approve' (publish the upload) or 'reject' (block it)", field="decision"
        )
    return value == "approve"


def _result(req: Any) -> dict[str, Any]:
    return dict(req.result or {})


def _was_flagged(req: Any) -> bool:
    """Held for review by the screener (waiting now, or decided by an operator since)."""
    result = _result(req)
    return req.status == REVIEW or result.get("decision") == REVIEW or "review" in result


def _image_url(request_id: str) -> str:
    return f"/v1/contents/{request_id}/image"


def to_item(req: Any, *, now: datetime | None = None) -> ReviewItem:
    """A stored request as a queue item (scores, model and reason from the screener's result)."""
    now = now or _now()
    result, meta = _result(req), dict(req.meta or {})
    scores = dict(result.get("scores") or {})
    face = result.get("score")
    if face is None and scores:
        numeric = [v for v in scores.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        face = max(numeric) if numeric else None
    version = result.get("version")
    created = req.created_at
    return ReviewItem(
        id=req.id,
        title=str(meta.get("title", "")),
        description=str(meta.get("description", "")),
        tags=list(req.tags or []),
        uploader=str(meta.get("uploader", "")),
        created_at=created,
        age_seconds=max(0.0, (now - created).total_seconds()) if created else 0.0,
        scores=scores,
        face_score=float(face) if isinstance(face, int | float) else None,
        model=result.get("model"),
        version=int(version) if isinstance(version, int | float) else None,
        reason=str(result.get("reason") or result.get("decision") or ""),
        boxes=list(result.get("boxes") or []),
        width=meta.get("width"),
        height=meta.get("height"),
        image_url=_image_url(req.id),
    )


def iter_requests(
    lm: Loopml, *, status: str | list[str] | None, since: datetime | None = None
) -> Iterator[Any]:
    """Every request of ``status`` (newest first), paging with the service's cursor; stops at ``since``."""
    before: datetime | None = None
    before_id: str | None = None
    while True:
        page = lm.async_requests.list(KIND, status=status, before=before, before_id=before_id, limit=PAGE)
        for req in page:
            if since is not None and req.created_at is not None and req.created_at < since:
                return
            yield req
        if len(page) < PAGE:
            return
        before, before_id = page[-1].created_at, page[-1].id


# -- the queue ---------------------------------------------------------------------------------------
def review_queue(lm: Loopml, *, limit: int = 50) -> list[ReviewItem]:
    """Uploads waiting for an operator, **oldest first** (the one closest to its SLO goes first)."""
    limit = check_number(limit, "limit", low=1, high=QUEUE_MAX, integer=True, whole_floats=True)
    waiting = list(iter_requests(lm, status=REVIEW))
    now = _now()
    return [to_item(req, now=now) for req in reversed(waiting)][:limit]


def queue_depth(lm: Loopml) -> int:
    """How many uploads wait for review now."""
    return int(lm.async_requests.counts(KIND).get(REVIEW, 0))


def decide(
    lm: Loopml,
    request_id: str,
    *,
    approve: bool,
    actor: str,
    note: str = "",
    endpoint: str = "moderation",
    export: bool = True,
) -> ReviewDecision:
    """Publish (``approve=True``) or reject an upload held for review, exactly once.

    The status change, the reviewer and the uploader's notification commit together; then the
    label goes to the endpoint's inference log as feedback and (``export=True``) into the day's
    partition of ``moderation_labels``. Those two follow-ups are repeatable and never undo the
    decision: when one fails it is logged, and ``export_labels`` / the retraining pipeline repair
    the dataset from the stored decisions. Unknown id -> ``NotFoundError``; already decided ->
    ``ConflictError`` naming the current status.
    """
    if not isinstance(approve, bool):
        raise ValidationError(
            f"approve must be True or False, got {approve!r}; or send decision='approve'|'reject'",
            field="decision",
        )
    actor = _text(actor, "actor", ACTOR_MAX, required=True)
    note = _text(note, "note", NOTE_MAX)
    req = lm.async_requests.get(request_id)
    if req.kind != KIND:
        raise NotFoundError(f"no moderation content {request_id!r} (it is a {req.kind!r} request)")
    if req.status != REVIEW:
        by = f" by {req.decided_by}" if req.decided_by else ""
        raise ConflictError(
            f"content {request_id} is {req.status!r}{by}, not waiting for review: it was decided already",
            field="status",
        )
    status = PUBLISHED if approve else REJECTED
    decision = "approve" if approve else "reject"
    decided_at = _now()
    result = _result(req)
    result["review"] = {
        "decision": decision,
        "reviewer": actor,
        "note": note,
        "decided_at": decided_at.isoformat(),
        "model_decision": result.get("decision"),
    }
    result["reason"] = f"operator {actor} {'approved' if approve else 'rejected'} it" + (
        f": {note}" if note else ""
    )
    meta = dict(req.meta or {})
    title = str(meta.get("title", ""))[:120]
    lm.async_requests.transition(
        request_id,
        expected=REVIEW,
        status=status,
        result=result,
        final=True,
        actor=actor,
        notification={
            "key": f"moderation.review:{request_id}",
            "topic": f"moderation.{status}",
            "recipient": str(meta.get("uploader", "")),
            "title": f"Your photo '{title}' was {'published' if approve else 'rejected'} after review",
            "body": note
            or (
                "An operator checked it and published it."
                if approve
                else "An operator checked it: it breaks the rules (a human face)."
            ),
            "data": {"content_id": request_id, "status": status, "reviewed": True},
        },
    )
    has_face = 0 if approve else 1
    feedback_sent = _send_feedback(lm, endpoint, result.get("request_id"), has_face, actor)
    exported = False
    if export:
        try:
            export_labels(lm, days=[req.created_at])
            exported = True
        except LoopmlError as exc:  # the decision stands; the next export repairs the day
            log.warning("labels for %s not exported yet: %s", request_id, exc)
    return ReviewDecision(
        id=request_id,
        status=status,
        decision=decision,
        reviewer=actor,
        note=note,
        has_face=has_face,
        decided_at=decided_at,
        feedback_sent=feedback_sent,
        labels_exported=exported,
    )


def _send_feedback(lm: Loopml, endpoint: str, inference_id: Any, has_face: int, actor: str) -> bool:
    if not isinstance(inference_id, str) or not inference_id:
        return False
    try:
        lm.inference.feedback(endpoint, inference_id, label=has_face, actor=actor)
    except LoopmlError as exc:
        log.warning("feedback for inference request %s not recorded: %s", inference_id, exc)
        return False
    return True


# -- labels ------------------------------------------------------------------------------------------
def _label_row(req: Any) -> dict[str, Any] | None:
    review = _result(req).get("review")
    if not isinstance(review, dict) or req.status not in DECIDED or not req.input_digest:
        return None
    decided = pd.Timestamp(review.get("decided_at") or req.finished_at or req.updated_at)
    decided = decided.tz_localize("UTC") if decided.tzinfo is None else decided.tz_convert("UTC")
    return {
        "request_id": req.id,
        "image_digest": req.input_digest,
        "has_face": 1 if req.status == REJECTED else 0,
        "source": "review",
        "reviewer": str(review.get("reviewer") or req.decided_by or ""),
        "decided_at": decided,
        "week": week_of(req.created_at),
    }


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _decided_on(lm: Loopml, day: date) -> list[dict[str, Any]]:
    start, end = _day_bounds(day)
    rows: list[dict[str, Any]] = []
    before: datetime | None = end
    before_id: str | None = None
    while True:
        page = lm.async_requests.list(
            KIND, status=list(DECIDED), before=before, before_id=before_id, limit=PAGE
        )
        for req in page:
            if req.created_at < start:
                return rows
            row = _label_row(req)
            if row is not None:
                rows.append(row)
        if len(page) < PAGE:
            return rows
        before, before_id = page[-1].created_at, page[-1].id


def _days(values: Iterable[datetime | date | str]) -> list[date]:
    out = set()
    for value in values:
        if isinstance(value, str):
            value = pd.Timestamp(value).to_pydatetime()
        out.add(value.astimezone(UTC).date() if isinstance(value, datetime) else value)
    return sorted(out)


def export_labels(lm: Loopml, *, days: Iterable[datetime | date | str] | None = None) -> Any:
    """Rebuild the ``moderation_labels`` partitions of ``days`` (upload days, UTC) from the decisions.

    ``days=None`` rebuilds every day that has a review decision. Returns the dataset version (or
    ``None`` when there is nothing to write). Identical rows give no new version, so calling it
    after every decision, or twice, is cheap and safe.
    """
    if days is None:
        days = sorted(
            {_day_bounds_key(req) for req in iter_requests(lm, status=list(DECIDED)) if _label_row(req)}
        )
    version = None
    for day in _days(days):
        rows = _decided_on(lm, day)
        if not rows:
            continue
        frame = pd.DataFrame(rows, columns=LABEL_COLUMNS).sort_values("request_id", ignore_index=True)
        version = lm.datasets.ingest(
            LABELS_DATASET,
            frame,
            contract=LABELS_CONTRACT,
            partition=day.isoformat(),
            actor="moderation-review",
        ).version
    return version


def _day_bounds_key(req: Any) -> date:
    return req.created_at.astimezone(UTC).date()


def read_labels(lm: Loopml) -> pd.DataFrame:
    """Every review label (empty frame with the label columns when no operator has decided yet)."""
    try:
        return lm.datasets.read(LABELS_DATASET)
    except NotFoundError:
        return pd.DataFrame(columns=LABEL_COLUMNS)


# -- capacity ----------------------------------------------------------------------------------------
def capacity_report(lm: Loopml, cfg: Any, *, weeks: int = 4, now: datetime | None = None) -> CapacityReport:
    """Flagged uploads per ISO week (the last ``weeks``, current one included) vs operator capacity.

    ``cfg`` is the ``ModerationConfig`` (its operator capacity per week is the limit).
    """
    weeks = check_number(weeks, "weeks", low=1, high=52, integer=True, whole_floats=True)
    capacity = int(_capacity(cfg))
    now = now or _now()
    this_monday = date.fromisoformat(week_of(now))
    first = this_monday - timedelta(weeks=weeks - 1)
    ids = [(first + timedelta(weeks=i)).isoformat() for i in range(weeks)]
    counts = {
        w: dict.fromkeys(("uploads", "flagged", "auto_rejected", "published", "reviewed", "pending"), 0)
        for w in ids
    }
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    for req in iter_requests(lm, status=None, since=since):
        if req.created_at is None:
            continue
        c = counts.get(week_of(req.created_at))
        if c is None:
            continue
        c["uploads"] += 1
        if _was_flagged(req):
            c["flagged"] += 1
            if req.status == REVIEW:
                c["pending"] += 1
            else:
                c["reviewed"] += 1
        elif req.status == REJECTED:
            c["auto_rejected"] += 1
        if req.status == PUBLISHED:
            c["published"] += 1
    loads = [
        WeekLoad(week=w, capacity=capacity, within_capacity=counts[w]["flagged"] <= capacity, **counts[w])
        for w in ids
    ]
    return CapacityReport(
        capacity_per_week=capacity,
        weeks=loads,
        queue_depth=queue_depth(lm),
        oldest_age_seconds=lm.async_requests.oldest_age_seconds(KIND, REVIEW),
    )


def _capacity(cfg: Any) -> int:
    value = getattr(cfg, "operator_capacity_per_week", None)
    if value is None:
        raise ValidationError(
            "cfg must be a ModerationConfig (it sets operator_capacity_per_week)", field="cfg"
        )
    return int(value)
