"""Human review: the queue, decisions (exactly once, with notification, label and feedback), the
capacity report, and the same through HTTP, the dashboard pages and the CLI.

Uploads are put in status ``review`` the way the screener does it (``lm.async_requests.submit`` then
``transition`` with the screener's result), so these tests need no model.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from loopml import Loopml
from loopml.apps.moderation import review
from loopml.apps.moderation.config import ModerationConfig
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.serving.app import create_app

APPS = ["loopml.apps.moderation.web"]


def jpeg(seed: int) -> bytes:
    img = Image.new("RGB", (64, 48), (seed * 37 % 255, seed * 91 % 255, 120))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def held(lm: Loopml, n: int, *, uploader: str = "user01") -> list[str]:
    """``n`` uploads held for review by a (pretend) screener, oldest first."""
    ids = []
    for i in range(n):
        req = lm.async_requests.submit(
            "moderation",
            data=jpeg(i),
            meta={"title": f"photo {i}", "uploader": uploader, "width": 64, "height": 48},
            tags=["cat"],
            job_kind="moderation.screen",
            queue="moderation",
            status="screening",
        )
        lm.async_requests.transition(
            req.id,
            expected="screening",
            status="review",
            result={
                "decision": "review",
                "score": 0.5 + i / 100,
                "scores": {"moderation": 0.5 + i / 100},
                "model": "moderation-face",
                "version": 1,
                "request_id": req.id,
                "reason": "a moderator will look at it",
            },
            actor="moderation.screener",
        )
        ids.append(req.id)
        time.sleep(0.002)  # distinct created_at, so "oldest first" is well defined
    return ids


def test_queue_is_oldest_first_with_what_the_screener_saw(lm: Loopml) -> None:
    ids = held(lm, 3)
    items = review.review_queue(lm)
    assert [i.id for i in items] == ids
    first = items[0]
    assert first.title == "photo 0" and first.uploader == "user01" and first.tags == ["cat"]
    assert first.face_score == pytest.approx(0.5) and first.model == "moderation-face" and first.version == 1
    assert first.image_url == f"/v1/contents/{ids[0]}/image"
    assert review.queue_depth(lm) == 3
    assert [i.id for i in review.review_queue(lm, limit=2)] == ids[:2]
    with pytest.raises(ValidationError) as bad:
        review.review_queue(lm, limit=0)
    assert bad.value.field == "limit"


def test_decisions_publish_or_reject_once_with_notification_and_label(lm: Loopml) -> None:
    a, b = held(lm, 2)
    done = review.decide(lm, a, approve=True, actor="ops-kim", note="a cat, no face")
    assert done.status == "published" and done.has_face == 0 and done.labels_exported
    rejected = review.decide(lm, b, approve=False, actor="ops-lee")
    assert rejected.status == "rejected" and rejected.has_face == 1

    req = lm.async_requests.get(a)
    assert req.status == "published" and req.finished_at is not None and req.decided_by == "ops-kim"
    assert (
        req.result["review"]["decision"] == "approve" and req.result["review"]["model_decision"] == "review"
    )
    notes = {n.key: n for n in lm.notify.notifications(limit=10)}
    assert notes[f"moderation.review:{a}"].topic == "moderation.published"
    assert notes[f"moderation.review:{a}"].recipient == "user01"
    assert notes[f"moderation.review:{b}"].topic == "moderation.rejected"

    labels = review.read_labels(lm).set_index("request_id")
    assert labels.loc[a, "has_face"] == 0 and labels.loc[b, "has_face"] == 1
    assert labels.loc[a, "reviewer"] == "ops-kim" and labels.loc[a, "source"] == "review"
    assert labels.loc[a, "image_digest"] == req.input_digest
    assert labels.loc[a, "week"] == review.week_of(req.created_at)
    assert lm.datasets.get(review.LABELS_DATASET).partitioned

    # deciding again: 409 naming the current status; the label and notification stay single
    with pytest.raises(ConflictError) as again:
        review.decide(lm, a, approve=False, actor="ops-lee")
    assert "'published'" in str(again.value) and "ops-kim" in str(again.value)
    assert len(lm.notify.notifications(limit=10)) == 2
    before = lm.datasets.version(review.LABELS_DATASET).number
    review.export_labels(lm)  # rebuilt from the decisions: identical rows, no new version
    assert lm.datasets.version(review.LABELS_DATASET).number == before
    assert review.review_queue(lm) == []


def test_bad_input_is_refused_with_the_field(lm: Loopml) -> None:
    (a,) = held(lm, 1)
    with pytest.raises(NotFoundError):
        review.decide(lm, "0" * 32, approve=True, actor="ops")
    with pytest.raises(ValidationError) as bad_id:
        review.decide(lm, "nope", approve=True, actor="ops")
    assert bad_id.value.field == "id"
    with pytest.raises(ValidationError) as bad_approve:
        review.decide(lm, a, approve="yes", actor="ops")  # type: ignore[arg-type]
    assert bad_approve.value.field == "decision"
    with pytest.raises(ValidationError) as no_actor:
        review.decide(lm, a, approve=True, actor="  ")
    assert no_actor.value.field == "actor"
    with pytest.raises(ValidationError) as long_note:
        review.decide(lm, a, approve=True, actor="ops", note="x" * 2001)
    assert long_note.value.field == "note"
    with pytest.raises(ValidationError) as bad_decision:
        review.parse_decision("maybe")
    assert bad_decision.value.field == "decision"
    assert lm.async_requests.get(a).status == "review"  # nothing happened


def test_capacity_report_counts_flagged_per_week_against_capacity(lm: Loopml) -> None:
    ids = held(lm, 3)
    published = lm.async_requests.submit(
        "moderation", data=jpeg(9), meta={"title": "t", "uploader": "u"}, job_kind=None, status="published"
    )
    assert published.status == "published"
    review.decide(lm, ids[0], approve=False, actor="ops")
    cfg = ModerationConfig(operator_capacity_per_week=2)
    report = review.capacity_report(lm, cfg, weeks=2)
    this = report.weeks[-1]
    assert this.week == review.week_of(datetime.now(tz=UTC))
    assert (this.uploads, this.flagged, this.reviewed, this.pending, this.published) == (4, 3, 1, 2, 1)
    assert not this.within_capacity and not report.within_capacity and report.peak_flagged == 3
    assert report.weeks[0].uploads == 0
    assert report.queue_depth == 2 and report.oldest_age_seconds is not None
    assert report.to_dict()["capacity_per_week"] == 2
    assert review.capacity_report(lm, ModerationConfig(operator_capacity_per_week=3)).within_capacity
    later = datetime.now(tz=UTC) + timedelta(weeks=5)
    assert review.capacity_report(lm, cfg, weeks=1, now=later).weeks[0].uploads == 0
    with pytest.raises(ValidationError) as bad:
        review.capacity_report(lm, cfg, weeks=0)
    assert bad.value.field == "weeks"
    with pytest.raises(ValidationError):
        review.capacity_report(lm, object())


def test_http_review_api_and_pages(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    ids = held(lm, 3)
    with TestClient(create_app(lm, apps=APPS)) as http:
        queue = http.get("/v1/moderation/review", params={"limit": 2}).json()
        assert queue["depth"] == 3 and [i["id"] for i in queue["items"]] == ids[:2]
        ok = http.post(f"/v1/moderation/review/{ids[0]}", json={"decision": "approve", "note": "fine"})
        assert ok.status_code == 200 and ok.json()["status"] == "published"
        assert ok.json()["reviewer"] == "api"
        again = http.post(f"/v1/moderation/review/{ids[0]}", json={"decision": "reject"})
        assert again.status_code == 409 and "published" in again.text
        unknown = http.post(f"/v1/moderation/review/{'0' * 32}", json={"decision": "approve"})
        assert unknown.status_code == 404
        bad = http.post(f"/v1/moderation/review/{ids[1]}", json={"decision": "maybe"})
        assert bad.status_code == 422 and "decision" in bad.text
        extra = http.post(f"/v1/moderation/review/{ids[1]}", json={"decision": "approve", "x": 1})
        assert extra.status_code == 422
        actor = http.post(
            f"/v1/moderation/review/{ids[1]}",
            json={"decision": "reject"},
            headers={"X-Loopml-Actor": "ops-kim"},
        )
        assert actor.json()["reviewer"] == "ops-kim"
        cap = http.get("/v1/moderation/capacity", params={"weeks": 1}).json()
        assert cap["weeks"][0]["flagged"] == 3 and cap["queue_depth"] == 1
        assert http.get("/v1/moderation/capacity", params={"weeks": 0}).status_code == 422
        page = http.get("/ui/moderation/review")
        assert page.status_code == 200 and ids[2] in page.text and "photo 2" in page.text
        overview = http.get("/ui/moderation")
        assert overview.status_code == 200 and "plot-capacity" in overview.text
    app = create_app(lm, apps=APPS)
    app.state.api_token = "s3cret"
    with TestClient(app) as http:
        assert http.post(f"/v1/moderation/review/{ids[2]}", json={"decision": "approve"}).status_code == 401
        assert "token-box" in http.get("/ui/moderation/review").text
        ok = http.post(
            f"/v1/moderation/review/{ids[2]}",
            json={"decision": "approve"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert ok.status_code == 200


def test_cli_review_capacity_status(lm: Loopml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.cli.moderation import register

    monkeypatch.setenv("LOOPML_HOME", str(lm.settings.home))
    monkeypatch.setenv("LOOPML_METADATA_URL", lm.settings.resolved_metadata_url)
    ids = held(lm, 2)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    listed = runner.invoke(app, ["moderation", "review", "list"])
    assert listed.exit_code == 0, listed.output
    assert "2 waiting" in listed.output and "photo 0" in listed.output
    ok = runner.invoke(app, ["moderation", "review", "approve", ids[0], "--actor", "ops-cli"])
    assert ok.exit_code == 0, ok.output
    assert "published by ops-cli" in ok.output
    again = runner.invoke(app, ["moderation", "review", "reject", ids[0]])
    assert again.exit_code != 0 and isinstance(again.exception, ConflictError)
    cap = runner.invoke(app, ["moderation", "capacity", "--weeks", "1"])
    assert cap.exit_code == 0 and "1 waiting" in cap.output
    status = runner.invoke(app, ["moderation", "status"])
    assert status.exit_code == 0 and "review" in status.output
    for args in (
        ["moderation", "--help"],
        ["moderation", "review", "--help"],
        ["moderation", "release", "--help"],
    ):
        assert runner.invoke(app, args).exit_code == 0
