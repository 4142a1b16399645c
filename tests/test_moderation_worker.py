"""The screening worker: real Haar models served through the ``moderation`` endpoint, decisions
stored with one notification each, failures that retry or fail with a reason, hot swap by alias."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
import skimage.data
from PIL import Image

from loopml import Loopml
from loopml.apps.moderation.config import ModerationConfig, save_config
from loopml.apps.moderation.jobs import screen_job
from loopml.apps.moderation.models import HaarFaceDetector, example_input
from loopml.apps.moderation.screening import close_screeners
from loopml.apps.moderation.uploads import upload

pytest.importorskip("loopml.notify")


def jpeg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


FACE = jpeg(skimage.data.astronaut())
CAT = jpeg(skimage.data.chelsea())


def detail(img: Image.Image) -> float:
    """Mean absolute difference of neighbouring pixels: high for a face, low for a mosaic."""
    arr = np.asarray(img, dtype=float)
    return float(np.abs(np.diff(arr, axis=1)).mean() + np.abs(np.diff(arr, axis=0)).mean())


@pytest.fixture(autouse=True)
def _stop_screeners() -> Iterator[None]:
    yield
    close_screeners()


def register(lm: Loopml, model: HaarFaceDetector, *, champion: bool = True) -> int:
    version = lm.registry.register("moderation-face", model, flavor="python", input_example=example_input())
    if champion:
        lm.registry.set_alias("moderation-face", "champion", version.number, actor="test", reason="test")
    return version.number


def run_jobs(lm: Loopml) -> list[dict]:
    """Claim and run every due moderation job in this thread, as a worker would."""
    results = []
    while jobs := lm.jobs.claim("test-worker", queues=("moderation",), limit=10):
        for job in jobs:
            try:
                result = screen_job(lm.ctx, job)
            except Exception as exc:
                lm.jobs.fail(job.id, "test-worker", repr(exc))
                results.append({"error": repr(exc)})
            else:
                lm.jobs.ack(job.id, "test-worker", result)
                results.append(result)
    return results


def test_outcomes_are_decided_logged_and_notified(lm: Loopml) -> None:
    register(lm, HaarFaceDetector())
    save_config(lm, ModerationConfig(reject_at=0.8, review_at=0.4))
    cat = upload(lm, CAT, title="Chelsea", tags=["cat"], uploader="ann")
    face = upload(lm, FACE, title="Me", uploader="bob")
    run_jobs(lm)
    cat, face = lm.async_requests.get(cat.id), lm.async_requests.get(face.id)
    assert (cat.status, cat.result["decision"], cat.finished_at is not None) == ("published", "publish", True)
    assert face.status == "rejected" and face.result["score"] >= 0.8, face.result
    for req in (cat, face):
        assert (req.result["model"], req.result["version"], req.result["request_id"]) == (
            "moderation-face",
            1,
            req.id,
        )
        assert req.decided_by == "moderation.screener" and req.result["reason"]
    assert lm.jobs.stats(queue="moderation").get("succeeded") == 2
    # the endpoint was created on first use and every screening is in the inference log
    assert lm.endpoints.get("moderation").spec.policy.model == "moderation-face@champion"
    record = lm.inference.get(face.id)
    assert record.endpoint == "moderation" and record.inputs[0]["width"] == 512
    notes = {n.recipient: n for n in lm.notify.notifications()}
    assert (notes["ann"].topic, notes["bob"].topic) == ("moderation.published", "moderation.rejected")
    assert notes["bob"].key == f"moderation.decision:{face.id}"


def test_rerunning_a_job_is_harmless(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    register(lm, HaarFaceDetector())
    req = upload(lm, CAT, title="cat", uploader="ann")
    job = lm.jobs.claim("w", queues=("moderation",))[0]
    first = screen_job(lm.ctx, job)
    decided = lm.async_requests.get(req.id)
    again = screen_job(lm.ctx, job)  # the crash-and-retry case: the decision exists already
    assert first["status"] == "published" and again == {"skipped": True, "status": "published"}
    assert lm.async_requests.get(req.id).revision == decided.revision
    assert len(lm.notify.notifications(recipient="ann")) == 1


def test_hot_swap_by_alias_without_restart(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    register(lm, HaarFaceDetector())
    first = upload(lm, CAT, title="one", uploader="ann")
    run_jobs(lm)
    assert lm.async_requests.get(first.id).result["version"] == 1
    v2 = register(lm, HaarFaceDetector(min_neighbors=3), champion=False)
    lm.registry.set_alias("moderation-face", "champion", v2, actor="test", reason="swap")
    second = upload(lm, jpeg(skimage.data.coffee()), title="two", uploader="ann")
    run_jobs(lm)  # the same process, the same runtime: the next job already uses v2
    assert lm.async_requests.get(second.id).result["version"] == v2


def test_unreadable_image_fails_with_reason_and_the_job_moves_on(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    register(lm, HaarFaceDetector())
    broken = lm.async_requests.submit(  # an input that slipped past the upload checks
        "moderation",
        data=CAT[: len(CAT) // 3],
        meta={"title": "half", "uploader": "ann", "width": 451, "height": 300},
        job_kind="moderation.screen",
        queue="moderation",
        status="screening",
    )
    empty = lm.async_requests.submit(
        "moderation",
        meta={"title": "none"},
        job_kind="moderation.screen",
        queue="moderation",
        status="screening",
    )
    assert [r["status"] for r in run_jobs(lm)] == ["failed", "failed"]
    assert "no stored image" in lm.async_requests.get(empty.id).error
    req = lm.async_requests.get(broken.id)
    assert req.status == "failed" and req.finished_at is not None
    assert "cannot be read" in req.error and "truncated" in req.error
    assert [n.topic for n in lm.notify.notifications(recipient="ann")] == ["moderation.failed"]
    assert lm.jobs.stats(queue="moderation").get("succeeded") == 2


def test_model_errors_retry_then_stay_visible_as_screening(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    save_config(lm, ModerationConfig(model_name="not-registered", max_attempts=1))
    req = upload(lm, CAT, title="cat", uploader="ann")
    assert "not-registered" in run_jobs(lm)[0]["error"]
    assert lm.jobs.get(req.job_id).status == "dead"
    assert lm.async_requests.get(req.id).status == "screening"  # not lost: still counted
    assert lm.async_requests.oldest_age_seconds("moderation", "screening") is not None
    assert lm.notify.notifications(recipient="ann") == []


def test_blur_faces_publishes_a_mosaic(lm_sqlite: Loopml) -> None:
    lm = lm_sqlite
    register(lm, HaarFaceDetector())
    save_config(lm, ModerationConfig(allow_blurred=True))
    req = upload(lm, FACE, title="me, blurred", uploader="bob", blur_faces=True)
    run_jobs(lm)
    done = lm.async_requests.get(req.id)
    assert done.status == "published" and done.result["blurred_faces"] >= 1, done.result
    blurred = Image.open(io.BytesIO(lm.ctx.artifacts.get_bytes(done.result["published_digest"])))
    assert blurred.size == (512, 512) and done.result["published_digest"] != done.input_digest
    x, y, w, h = (int(v) for v in done.result["boxes"][0])
    original = Image.open(io.BytesIO(FACE)).convert("L")
    face_before = original.crop((x, y, x + w, y + h))
    face_after = blurred.convert("L").crop((x, y, x + w, y + h))
    assert detail(face_after) < detail(face_before) / 2  # pixelated: the fine detail is gone


def test_heavy_check_and_parallel_endpoints(lm_sqlite: Loopml) -> None:
    from loopml.serving.endpoints import EndpointSpec, Single

    lm = lm_sqlite
    register(lm, HaarFaceDetector())
    strict = register(lm, HaarFaceDetector(min_neighbors=2), champion=False)
    lm.endpoints.create(
        EndpointSpec("moderation-heavy", Single(f"moderation-face/{strict}"), timeout_ms=10_000)
    )
    lm.endpoints.create(
        EndpointSpec("moderation-extra", Single(f"moderation-face/{strict}"), timeout_ms=10_000)
    )
    cfg = ModerationConfig(
        heavy_endpoint="moderation-heavy", heavy_band=(0.0, 1.0), parallel_endpoints=("moderation-extra",)
    )
    save_config(lm, cfg)
    req = upload(lm, CAT, title="cat", uploader="ann")
    run_jobs(lm)
    result = lm.async_requests.get(req.id).result
    assert set(result["scores"]) == {"moderation", "moderation-extra"}
    assert result["heavy_score"] is not None and result["score"] == result["heavy_score"]
    assert lm.inference.get(f"{req.id}.heavy").endpoint == "moderation-heavy"
