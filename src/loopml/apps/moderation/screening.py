"""Screen one upload: score it through the ``moderation`` endpoint, decide, store the decision with
its notification in one transaction.

Why through an endpoint rather than a model loaded here: the platform then gives the screener
everything the seeds ask of an asynchronous inference service for free - models loaded by alias and
hot-swapped without a restart (the runtime watches aliases; ``refresh()`` before each job makes the
swap visible to the very next job), shadow and A/B releases (sticky by uploader through
``routing_key``), the inference log (the screening request's id is the content id, so review
labels join it later) and serving metrics.

Failure semantics (the job queue retries what raises):
- unreadable image -> status ``failed`` with the reason, final and notified; the job succeeds;
- a model error, a fallback answer or a timeout -> raise, the queue retries with backoff; after
  ``max_attempts`` the job is dead and the request stays ``screening``: still visible, counted by
  the queue-age signal (``lm.async_requests.oldest_age_seconds("moderation", "screening")``) that
  the moderation SLO alerts on, and re-runnable with ``loopml jobs requeue``;
- a request that is no longer ``screening`` (a re-run after a crash that had already decided, or a
  human who decided first) is skipped: the compare-and-set transition guarantees one decision and
  therefore one notification.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loopml.apps.moderation import images
from loopml.apps.moderation.config import ModerationConfig, load_config
from loopml.apps.moderation.policy import ScreeningPolicy
from loopml.apps.moderation.uploads import (
    FAILED,
    KIND,
    PUBLISHED,
    REJECTED,
    REVIEW,
    SCREENING,
    decision_notification,
)
from loopml.errors import ConflictError, NotFoundError, ValidationError

log = logging.getLogger("loopml.apps.moderation")

ACTOR = "moderation.screener"
STATUS_OF = {"publish": PUBLISHED, "review": REVIEW, "reject": REJECTED}


class ScreeningError(RuntimeError):
    """The models could not score the upload now (the job is retried)."""


def policy_for(cfg: ModerationConfig) -> ScreeningPolicy:
    """The decision rule of ``cfg``; the heavy band only matters when a heavy endpoint exists."""
    band = tuple(cfg.heavy_band) if cfg.heavy_endpoint and cfg.heavy_band[0] < cfg.heavy_band[1] else None
    return ScreeningPolicy(
        reject_at=math.inf if cfg.reject_at is None else cfg.reject_at,
        review_at=cfg.review_at,
        heavy_band=band,
        aggregate=cfg.aggregate,
    )


def ensure_endpoint(lm: Any, cfg: ModerationConfig) -> bool:
    """Create the screening endpoint as ``Single("<model>@champion")`` if it does not exist; True if
    created. An existing endpoint is left alone (its policy may be a shadow or an A/B test)."""
    from loopml.serving.endpoints import EndpointSpec, Single

    try:
        lm.endpoints.get(cfg.endpoint)
        return False
    except NotFoundError:
        pass
    spec = EndpointSpec(
        cfg.endpoint,
        Single(f"{cfg.model_name}@champion"),
        timeout_ms=cfg.endpoint_timeout_ms,
        max_batch_rows=16,
        description="moderation: face screening of uploads (asynchronous)",
    )
    try:
        lm.endpoints.create(spec, actor=ACTOR, reason="first screening job")
    except ConflictError:  # another worker created it a moment ago
        return False
    return True


@dataclass
class Score:
    """One endpoint's answer for one upload."""

    endpoint: str
    score: float
    boxes: list[list[float]] = field(default_factory=list)
    faces: int = 0
    model: str | None = None
    version: int | None = None
    arm: str | None = None
    request_id: str = ""
    latency_ms: float | None = None


def read_output(output: Any) -> tuple[float, list[list[float]], int]:
    """``(face score, boxes, faces)`` from an endpoint output: the models' ``{"face_score", "faces",
    "boxes"}``, a binary classifier's ``{"label", "probability"}`` or a bare number."""
    boxes: list[list[float]] = []
    if isinstance(output, dict):
        value = output.get("face_score", output.get("probability"))
        boxes = [list(map(float, b)) for b in output.get("boxes") or []]
        faces = output.get("faces")
    else:
        value, faces = output, None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ScreeningError(f"the model answered {output!r}; expected a face score in [0, 1]")
    return float(value), boxes, int(faces) if isinstance(faces, int | float) else len(boxes)


class Screener:
    """Screens uploads in one worker process. Holds the process's ``EndpointRuntime`` (started on
    first use, so a worker that never sees a moderation job loads no model)."""

    def __init__(self, lm: Any, *, runtime: Any = None) -> None:
        self.lm = lm
        self._runtime = runtime
        self._writer: Any = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ensured: set[str] = set()
        self._models: dict[str, Any] = {}

    @property
    def runtime(self) -> Any:
        with self._lock:
            if self._runtime is None:
                from loopml.serving.endpoints import EndpointRuntime

                self._writer = self.lm.inference.writer(flush_interval=0.2)
                self._runtime = EndpointRuntime(self.lm, log_writer=self._writer).start()
            return self._runtime

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None and self._writer is not None:  # only what we started
                self._runtime.drain_shadows(timeout=2.0)
                self._runtime.close()
                self._writer.close()
                self._runtime = self._writer = None
            if self._pool is not None:
                self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ scoring
    def _predict(self, endpoint: str, row: dict[str, Any], request_id: str, routing_key: str) -> Score:
        result = self.runtime.predict(endpoint, [row], request_id=request_id, routing_key=routing_key or None)
        if result.status != "ok":
            raise ScreeningError(f"endpoint {endpoint} answered {result.status!r} (a fallback), not a score")
        score, boxes, faces = read_output(result.outputs[0])
        return Score(
            endpoint,
            score,
            boxes,
            faces,
            result.model,
            result.version,
            result.arm,
            result.request_id,
            result.latency_ms,
        )

    def _score_all(
        self, cfg: ModerationConfig, row: dict[str, Any], content_id: str, uploader: str
    ) -> list[Score]:
        calls = [(ep, content_id if ep == cfg.endpoint else f"{content_id}.{ep}") for ep in cfg.endpoints]
        if len(calls) == 1:
            return [self._predict(calls[0][0], row, calls[0][1], uploader)]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="moderation-parallel")
        futures = [self._pool.submit(self._predict, ep, row, rid, uploader) for ep, rid in calls]
        return [f.result() for f in futures]

    def _ensure(self, cfg: ModerationConfig) -> None:
        if cfg.endpoint not in self._ensured:
            if ensure_endpoint(self.lm, cfg):
                self.runtime.refresh(force=True)
            self._ensured.add(cfg.endpoint)

    # ------------------------------------------------------------------ the job
    def screen(self, content_id: str) -> dict[str, Any]:
        """Screen one upload and store the decision; returns a small summary for the job result."""
        lm = self.lm
        req = lm.async_requests.get(content_id)
        if req.kind != KIND:
            raise ValidationError(
                f"request {content_id} is a {req.kind!r} request, not an upload", field="request_id"
            )
        if req.status != SCREENING:
            return {"skipped": True, "status": req.status}
        cfg = load_config(lm)
        meta = req.meta or {}
        uploader = str(meta.get("uploader") or "")
        title = str(meta.get("title") or "untitled")
        blur = bool(meta.get("blur_faces"))
        try:
            if not req.input_digest:
                raise ValidationError("the request has no stored image", field="image")
            data = lm.ctx.artifacts.get_bytes(req.input_digest)
            img = images.decode_image(
                data,
                max_bytes=max(
                    cfg.max_upload_bytes, len(data)
                ),  # accepted already: a lowered limit is not retroactive
                max_pixels=cfg.max_pixels,
                max_side=cfg.max_side,
                formats=cfg.formats,
                draft_side=None if blur else 1024,
            )
        except ValidationError as exc:
            reason = f"the image cannot be read: {exc}"
            return self._decide(
                content_id, FAILED, {"decision": "failed", "reason": reason}, uploader, title, error=reason
            )
        self._ensure(cfg)
        self.runtime.refresh()  # one cheap query: an alias moved a moment ago serves this job
        row = {
            "image_path": str(lm.ctx.artifacts.local_path(req.input_digest, verify=False)),  # verified above
            "width": int(meta.get("width") or img.size[0]),
            "height": int(meta.get("height") or img.size[1]),
        }
        scores = self._score_all(cfg, row, content_id, uploader)
        policy = policy_for(cfg)
        light = {s.endpoint: s.score for s in scores}
        heavy: Score | None = None
        if policy.needs_heavy(light):
            heavy = self._predict(cfg.heavy_endpoint, row, f"{content_id}.heavy", uploader)
        decision = policy.decide(light, None if heavy is None else heavy.score)
        primary = scores[0]
        boxes = primary.boxes or (heavy.boxes if heavy is not None else [])
        if blur and not boxes and decision != "publish":
            boxes = self._boxes(primary, img)
        result: dict[str, Any] = {
            "decision": decision,
            "score": policy.score(light) if heavy is None else heavy.score,
            "scores": light,
            "heavy_score": None if heavy is None else heavy.score,
            "model": primary.model,
            "version": primary.version,
            "arm": primary.arm,
            "request_id": primary.request_id,
            "endpoint": primary.endpoint,
            "faces": max(primary.faces, heavy.faces if heavy is not None else 0),
            "boxes": boxes,
            "thresholds": {"reject_at": cfg.reject_at, "review_at": cfg.review_at},
        }
        if blur and boxes:  # the uploader asked for a mosaic instead of a rejection
            blurred = images.blur_regions(img, boxes, strength=cfg.blur_strength)
            result["published_digest"] = lm.ctx.artifacts.put_bytes(images.encode_jpeg(blurred))
            result["decision"] = decision = "publish"
            result["blurred_faces"] = len(boxes)
        result["reason"] = _reason(decision, result)
        self._flush_log()
        return self._decide(content_id, STATUS_OF[decision], result, uploader, title)

    def _boxes(self, primary: Score, img: Any) -> list[list[float]]:
        """Face boxes from the very model version that scored the upload (the endpoint answers a
        classifier's score only). Loaded once per version and process."""
        if primary.model is None or primary.version is None:
            return []
        ref = f"{primary.model}/{primary.version}"
        model = self._models.get(ref)
        if model is None:
            loaded = self.lm.registry.load(ref)
            model = self._models[ref] = getattr(loaded.predictor, "obj", None)
        if not hasattr(model, "detect_image"):
            log.warning(
                "model %s cannot locate faces (no detect_image); publishing without a mosaic is not allowed",
                ref,
            )
            return []
        return [list(map(float, b)) for b in model.detect_image(img).get("boxes") or []]

    def _flush_log(self) -> None:
        """Write the inference record now, so a review label can be attached to it at once."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except Exception as exc:  # the log is best effort; the decision is not
                log.warning("inference log flush failed: %s", exc)

    def _decide(
        self,
        content_id: str,
        status: str,
        result: dict[str, Any],
        uploader: str,
        title: str,
        error: str | None = None,
    ) -> dict[str, Any]:
        note = decision_notification(content_id, status, uploader, title, result["reason"])
        try:
            self.lm.async_requests.transition(
                content_id,
                expected=SCREENING,
                status=status,
                result=result,
                error=error,
                final=status != REVIEW,
                actor=ACTOR,
                notification=note,
            )
        except ConflictError:  # decided by a previous run of this job or by a person: keep theirs
            return {"skipped": True, "status": self.lm.async_requests.get(content_id).status}
        return {"status": status, "decision": result["decision"], "score": result.get("score")}


def _reason(decision: str, result: dict[str, Any]) -> str:
    score = result.get("score")
    if result.get("blurred_faces"):
        return f"published with {result['blurred_faces']} face(s) blurred, as you asked"
    if decision == "reject":
        return (
            f"a human face was detected (score {score:.2f}); photos of people are not allowed. "
            "Upload it again with blur_faces to publish it with the faces blurred."
        )
    if decision == "review":
        return f"a moderator will look at it (face score {score:.2f}); you will be told the outcome"
    return f"no human face found (score {score:.2f})"


_screeners: dict[int, Screener] = {}
_screeners_lock = threading.Lock()


def screener_for(ctx: Any) -> Screener:
    """The process's screener for this context (one endpoint runtime per worker process)."""
    with _screeners_lock:
        screener = _screeners.get(id(ctx))
        if screener is None or screener.lm.ctx is not ctx:
            from loopml import Loopml

            screener = _screeners[id(ctx)] = Screener(Loopml.from_context(ctx))
        return screener


def close_screeners() -> None:
    """Stop every screener's endpoint runtime and flush its inference log (worker exit, tests)."""
    with _screeners_lock:
        screeners = list(_screeners.values())
        _screeners.clear()
    for screener in screeners:
        screener.close()
