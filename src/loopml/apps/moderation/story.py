"""The moderation story (``loopml demo moderation``): uploads -> screening -> human review ->
retraining -> shadow -> online A/B -> promotion, told with its figures.

Everything runs in this process on the embedded default, through the same code paths as
production: uploads go through ``upload`` (validation, duplicate check, one transaction with the
job), an in-process ``loopml.worker.Worker`` claims the ``moderation`` and ``notify`` queues
(screening through the ``moderation`` endpoint, webhook deliveries to a receiver on 127.0.0.1), a
simulated operator clears the review queue with ``review.decide`` (known labels, with a small
error rate), the ``moderation.retrain`` pipeline trains and gates v2, and ``release`` moves the
endpoint through shadow and A/B. Labels for the A/B traffic that no operator saw (published or
rejected at once) come from the simulator's truth, as an audit sample would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from loopml import Loopml
from loopml.apps.moderation import pipeline as retrain
from loopml.apps.moderation import release, review, training
from loopml.apps.moderation.config import ModerationConfig, save_config
from loopml.apps.moderation.data import simulated_upload
from loopml.errors import ConflictError, LoopmlError, ValidationError
from loopml.registry import GateBlockedError

Progress = Callable[[str, int, int], None]
OPERATOR = "ops-kim"
AUDITOR = "audit-sample"
TITLES = {
    "animal": ["Sleepy cat", "Morning walk", "Our new kitten", "Garden visitor", "Lazy Sunday"],
    "face": ["Me and my dog", "Family picnic", "Selfie at the zoo", "Birthday party"],
    "small_face": ["Cat on the sofa", "Park bench", "Window view", "Snow day"],
}
TAGS = {"animal": ["cat", "pets"], "face": ["dog", "family"], "small_face": ["cat", "home"]}


@dataclass(frozen=True)
class StorySizes:
    """How much happens: starting images, uploads per phase and the operator's error rate."""

    starting: int
    day: dict[str, int]
    shadow: int
    ab: int
    operator_error: float = 0.05
    seed: int = 0


def sizes(fast: bool = False) -> StorySizes:
    if fast:
        return StorySizes(
            starting=120, day={"animal": 5, "face": 3, "small_face": 3, "corrupt": 1}, shadow=6, ab=12
        )
    return StorySizes(
        starting=300, day={"animal": 12, "face": 6, "small_face": 6, "corrupt": 2}, shadow=12, ab=72
    )


@dataclass
class ModerationStoryResult:
    """The figures of the story, for the CLI and for tests."""

    config: dict[str, Any]
    uploads: int = 0
    refused: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicate_caught: bool = False
    blurred: int = 0
    reviewed: int = 0
    operator_mistakes: int = 0
    labels_rows: int = 0
    held_out_week: str = ""
    v1: dict[str, Any] = field(default_factory=dict)
    v2: dict[str, Any] = field(default_factory=dict)
    v1_version: int | None = None
    v2_version: int | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    shadow: dict[str, Any] | None = None
    ab: dict[str, Any] | None = None
    promoted: bool = False
    promotion: str = ""
    champion: int | None = None
    capacity: dict[str, Any] = field(default_factory=dict)
    notifications: int = 0
    webhook_posts: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    dashboard: str = "/ui/moderation"
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class _Receiver:
    """A webhook receiver on 127.0.0.1 that counts deliveries by Idempotency-Key."""

    def __init__(self) -> None:
        keys: Counter[str] = Counter()
        self.keys = keys

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                keys[self.headers.get("Idempotency-Key") or ""] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="moderation-demo-hook", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Workers:
    """An in-process worker on the moderation and notify queues, stopped when the work is done."""

    def __init__(self, lm: Loopml, cfg: ModerationConfig) -> None:
        import loopml.apps.moderation.jobs
        import loopml.notify.jobs  # noqa: F401 - registers notify.deliver
        from loopml.worker import Worker

        self.lm, self.cfg = lm, cfg
        self.stop = threading.Event()
        self.worker = Worker(
            lm.ctx, queues=(cfg.queue, "notify"), concurrency=2, lease_seconds=60, poll_max=0.2
        )
        self.thread = threading.Thread(
            target=self.worker.run, args=(self.stop,), name="moderation-demo-worker", daemon=True
        )
        self.thread.start()

    def wait(self, timeout: float = 300.0) -> None:
        """Until no upload is screening and no notify/moderation job is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screening = self.lm.async_requests.counts(review.KIND).get("screening", 0)
            busy = sum(
                n
                for q in (self.cfg.queue, "notify")
                for s, n in self.lm.jobs.stats(queue=q).items()
                if s in ("queued", "running")
            )
            if not screening and not busy:
                return
            time.sleep(0.1)
        raise LoopmlError(f"screening did not finish within {timeout:.0f} s; see `loopml jobs list`")

    def settle(self) -> None:
        """Finish shadow calls and write the inference log now (the screener reopens on the next job)."""
        from loopml.apps.moderation.screening import screener_for

        screener_for(self.lm.ctx).close()

    def close(self) -> None:
        self.settle()
        self.stop.set()
        self.thread.join(timeout=60)


def story_config() -> ModerationConfig:
    """The demo's settings: the face mosaic switched on, and a wide review band (``review_at`` 0.2)
    so that v1's weak detections (one Haar hit on fur) reach an operator instead of being published:
    those reviews are the hard negatives v2 learns from."""
    return ModerationConfig(allow_blurred=True, review_at=0.2)


def run_moderation_story(
    lm: Loopml,
    cfg: ModerationConfig | None = None,
    *,
    fast: bool = False,
    say: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> ModerationStoryResult:
    """Run the whole moderation story on ``lm`` and return its figures (see the module docstring)."""
    if cfg is not None and not isinstance(cfg, ModerationConfig):
        raise ValidationError(f"cfg must be a ModerationConfig, got {type(cfg).__name__}", field="cfg")
    cfg = cfg or story_config()
    size = sizes(fast)
    started = time.perf_counter()
    out = ModerationStoryResult(config=cfg.to_dict())
    save_config(lm, cfg)
    truth: dict[str, tuple[str, int]] = {}  # content id -> (kind, has_face)
    rng = np.random.default_rng(size.seed)
    steps = ["starting data", "v1", "day of uploads", "review", "retrain", "shadow", "A/B", "release"]

    def phase(name: str) -> None:
        now = time.perf_counter()
        out.phases[name] = round(now - started - sum(out.phases.values()), 2)
        if progress is not None:
            progress(name, steps.index(name) + 1, len(steps))

    # 1. starting data and v1 -------------------------------------------------------------------
    start, version = training.starting_data(lm, n=size.starting, seed=size.seed)
    say(
        f"starting data: {len(start)} labelled images built offline from package images "
        f"({int(start['has_face'].sum())} with faces, {int((start['kind'] == 'small_face').sum())} of them small) "
        f"-> dataset {training.STARTING_DATASET}@{version.number}"
    )
    phase("starting data")
    out.v1_version = _register_v1(lm, cfg)
    from loopml.apps.moderation.screening import ensure_endpoint

    ensure_endpoint(lm, cfg)
    say(
        f"v1: OpenCV Haar cascade registered as {cfg.model_name}/{out.v1_version} = champion; endpoint {cfg.endpoint} = Single({cfg.model_name}@champion)"
    )
    phase("v1")

    receiver = _Receiver()
    try:
        lm.notify.add_webhook("moderation-demo", receiver.url, topics=("moderation.",), actor="demo")
    except ConflictError:  # a re-run on the same home: point the hook at this run's receiver
        lm.notify.update_webhook("moderation-demo", url=receiver.url, active=True)
    workers = _Workers(lm, cfg)
    try:
        # 2. a day of uploads -----------------------------------------------------------------
        uploaded = _upload_batch(lm, cfg, size.day, truth, out, rng, seed=100, blur_faces=1)
        workers.wait()
        _duplicate(lm, cfg, truth, out)
        workers.wait()
        counts = Counter(lm.async_requests.get(i).status for i in uploaded)
        say(
            f"a day of uploads: {len(uploaded)} accepted, {out.refused} refused at upload (corrupt); "
            f"screened by the worker: {dict(counts)}; duplicate of a rejected photo caught: {out.duplicate_caught}; "
            f"{out.blurred} published with faces blurred"
        )
        phase("day of uploads")

        # 3. the operator clears the queue ----------------------------------------------------
        _operator(lm, cfg, truth, out, rng, size.operator_error)
        out.labels_rows = len(review.read_labels(lm))
        say(
            f"operator {OPERATOR} cleared the review queue: {out.reviewed} decisions "
            f"({out.operator_mistakes} mistaken), {out.labels_rows} rows in dataset {review.LABELS_DATASET}"
        )
        phase("review")

        # 4. retrain ---------------------------------------------------------------------------
        run = lm.pipelines.run(retrain.RETRAIN, retrain.retrain_params(cfg, n=size.starting, seed=size.seed))
        if run.status != "succeeded":
            failed = [s for s in run.steps if s.status == "failed"]
            detail = failed[0].error.strip().splitlines()[-1] if failed and failed[0].error else run.error
            raise LoopmlError(f"the retraining run {run.id} failed: {detail}")
        evaluated = lm.pipelines.output(run.id, "evaluate")
        out.gate = lm.pipelines.output(run.id, "gate")
        out.held_out_week = evaluated["held_out_week"]
        out.v2 = evaluated["candidate"]
        out.v1 = evaluated.get("champion") or {}
        out.v2_version = int(out.gate["version"])
        say(
            f"retrained: {cfg.model_name}/{out.v2_version} (HOG + linear model); held-out week {out.held_out_week}: "
            f"{_fig(out.v1, 'v1')} | {_fig(out.v2, 'v2')}"
        )
        say(
            f"release gate (dry run): {'passed' if out.gate['passed'] else 'blocked'}: "
            + "; ".join(g["summary"] for g in out.gate["gates"])
            if out.gate["gates"]
            else "release gate: no champion to beat"
        )
        phase("retrain")

        # 5. shadow (harmless: nobody is affected, so even a candidate the gate blocked may shadow)
        candidate = None if out.gate.get("challenger") else f"{cfg.model_name}/{out.v2_version}"
        release.start_shadow(lm, cfg, candidate=candidate)
        _upload_batch(lm, cfg, _mix(size.shadow), truth, out, rng, seed=300)
        workers.wait()
        workers.settle()
        shadow = release.shadow_report(lm, cfg)
        out.shadow = shadow.to_dict()
        _operator(lm, cfg, truth, out, rng, size.operator_error)
        say(
            f"shadow: {shadow.shadowed} uploads scored by both; decisions agree on {_pct(shadow.agreement)}; "
            f"p99 {_ms(shadow.primary_p99_ms)} (v1, decides) vs {_ms(shadow.shadow_p99_ms)} (v2, shadow); "
            f"shadow errors {shadow.shadow_errors}"
        )
        phase("shadow")
        if out.gate.get("challenger"):
            # 6. online A/B ---------------------------------------------------------------------
            release.start_ab(lm, cfg, 0.5)
            ab_ids = _upload_batch(lm, cfg, _mix(size.ab), truth, out, rng, seed=500, uploaders=max(12, size.ab // 2))
            workers.wait()
            workers.settle()
            _operator(lm, cfg, truth, out, rng, size.operator_error)
            _audit(lm, cfg, ab_ids, truth)
            ab = release.ab_report(lm, cfg)
            out.ab = ab.to_dict()
            for arm in ab.arms:
                say(
                    f"  A/B arm {arm.arm} (v{','.join(map(str, arm.versions)) or '-'}): {arm.requests} uploads, "
                    f"{arm.labelled} labelled, flagged {arm.flagged}, precision {_pct(arm.precision)}, recall {_pct(arm.recall)}"
                )
            say(f"A/B verdict: {ab.verdict}. {ab.explanation}")
            phase("A/B")

            # 7. promote or keep -----------------------------------------------------------------
            _decide_release(lm, cfg, out, ab, say)
        else:
            release.end_test(lm, cfg, reason="the gate blocked the candidate: no online A/B")
            out.promotion = "no online A/B: the release gate blocked v2, so the champion keeps serving"
            say(out.promotion)
            phase("A/B")
        phase("release")
    finally:
        workers.close()
        receiver.close()
    out.outcomes = lm.async_requests.counts(review.KIND)
    out.uploads = sum(out.outcomes.values())
    out.capacity = review.capacity_report(lm, cfg, weeks=2).to_dict()
    out.notifications = len(lm.notify.notifications(topic="moderation.", limit=1000))
    out.deliveries = dict(Counter(d.status for d in lm.notify.deliveries(limit=1000)))
    out.webhook_posts = sum(receiver.keys.values())
    out.champion = lm.registry.get_version(f"{cfg.model_name}@champion").number
    out.seconds = time.perf_counter() - started
    return out


def _register_v1(lm: Loopml, cfg: ModerationConfig) -> int:
    """Haar v1 on the config's scale (identity calibration), champion as the first holder."""
    from loopml.apps.moderation.models import HaarFaceDetector, example_input

    model = training.CalibratedScreener(
        HaarFaceDetector(),
        raw_review_at=cfg.review_at,
        raw_reject_at=cfg.reject_at,
        review_at=cfg.review_at,
        reject_at=cfg.reject_at,
    )
    version = lm.registry.register(
        cfg.model_name,
        model,
        flavor="python",
        input_example=example_input(),
        description="v1: OpenCV Haar cascade haarcascade_frontalface_alt2 (no training)",
        actor="demo",
    )
    lm.registry.set_alias(cfg.model_name, "champion", version.number, actor="demo", reason="v1 goes live")
    return version.number


def _mix(n: int) -> dict[str, int]:
    faces = max(1, n // 4)
    small = max(1, n // 4)
    return {"animal": n - faces - small, "face": faces, "small_face": small}


def _upload_batch(
    lm: Loopml,
    cfg: ModerationConfig,
    kinds: dict[str, int],
    truth: dict[str, tuple[str, int]],
    out: ModerationStoryResult,
    rng: np.random.Generator,
    *,
    seed: int,
    blur_faces: int = 0,
    uploaders: int = 8,
) -> list[str]:
    """Upload a shuffled batch through ``upload``; corrupt files are refused (counted), never queued."""
    from loopml.apps.moderation.uploads import upload

    order = [k for k, n in kinds.items() for _ in range(n)]
    rng.shuffle(order)
    ids: list[str] = []
    blur_left = blur_faces
    for i, kind in enumerate(order):
        data = simulated_upload(seed + i, kind)
        uploader = f"user{int(rng.integers(1, uploaders + 1)):02d}"
        pool = TITLES.get(kind, TITLES["animal"])
        blur = kind == "face" and blur_left > 0
        try:
            req = upload(
                lm,
                data,
                title=pool[i % len(pool)],
                description="uploaded by the moderation demo",
                tags=TAGS.get(kind, ["cat"]),
                uploader=uploader,
                blur_faces=blur,
                cfg=cfg,
            )
        except ValidationError:
            out.refused += 1
            continue
        blur_left -= blur
        ids.append(req.id)
        truth[req.id] = (kind, 0 if blur or kind == "animal" else 1)
    return ids


def _duplicate(
    lm: Loopml, cfg: ModerationConfig, truth: dict[str, tuple[str, int]], out: ModerationStoryResult
) -> None:
    """Upload a rejected photo again: the perceptual hash catches it at upload."""
    from loopml.apps.moderation.uploads import upload

    rejected = [i for i in truth if lm.async_requests.get(i).status == "rejected"]
    if not rejected:
        return
    original = rejected[0]
    req = upload(
        lm,
        lm.async_requests.input_bytes(original),
        title="Trying again",
        tags=["dog"],
        uploader="user99",
        cfg=cfg,
    )
    truth[req.id] = (truth[original][0], 1)
    out.duplicate_caught = req.status == "rejected" and "duplicate" in str(
        (req.result or {}).get("reason", "")
    )
    out.blurred = sum(1 for i in truth if (lm.async_requests.get(i).result or {}).get("blurred_faces"))


def _operator(
    lm: Loopml,
    cfg: ModerationConfig,
    truth: dict[str, tuple[str, int]],
    out: ModerationStoryResult,
    rng: np.random.Generator,
    error_rate: float,
) -> None:
    """Clear the queue like an operator who knows the answer and errs ``error_rate`` of the time."""
    while True:
        items = review.review_queue(lm, limit=200)
        if not items:
            return
        for item in items:
            has_face = truth.get(item.id, ("unknown", 0))[1]
            mistake = bool(rng.random() < error_rate)
            approve = (has_face == 0) != mistake
            review.decide(lm, item.id, approve=approve, actor=OPERATOR, endpoint=cfg.endpoint, export=False)
            out.reviewed += 1
            out.operator_mistakes += int(mistake)
        review.export_labels(lm, days=[i.created_at for i in items])


def _audit(lm: Loopml, cfg: ModerationConfig, ids: list[str], truth: dict[str, tuple[str, int]]) -> None:
    """Known labels for A/B uploads no operator saw (published or rejected at once)."""
    items = []
    for content_id in ids:
        req = lm.async_requests.get(content_id)
        result = req.result or {}
        if "review" in result or not result.get("request_id"):
            continue
        items.append({"request_id": result["request_id"], "label": truth[content_id][1]})
    if items:
        lm.inference.feedback_many(cfg.endpoint, items, actor=AUDITOR)


def _decide_release(
    lm: Loopml, cfg: ModerationConfig, out: ModerationStoryResult, ab: Any, say: Callable[[str], None]
) -> None:
    """Promote when the A/B test says the challenger is better; with too few labels, fall back to
    the held-out week (no less precision, no less recall, flagged volume within capacity)."""
    better = ab.better == release.CHALLENGER
    basis = "the A/B test"
    if ab.better is None:
        basis = "the held-out week (the A/B test had too few labels)"
        v1, v2 = out.v1, out.v2
        better = (
            (v2.get("precision") or 0) >= (v1.get("precision") or 0)
            and (v2.get("recall") or 0) >= (v1.get("recall") or 0)
            and bool(v2.get("within_capacity"))
        )
    if not better:
        release.end_test(lm, cfg, reason=f"champion stays ({basis})")
        out.promotion = f"champion stays: {basis} did not favour v2"
        say(out.promotion)
        return
    try:
        done = release.promote(lm, cfg, reason=f"better on {basis}")
    except GateBlockedError as blocked:
        release.end_test(lm, cfg, reason="release gate blocked the challenger")
        out.promotion = f"the release gate blocked v2: {blocked.report.render()}"
        say(out.promotion)
        return
    out.promoted = True
    out.promotion = f"promoted {cfg.model_name}/{done['champion']} (better on {basis}); gate: " + "; ".join(
        g["summary"] for g in done["gates"]
    )
    say(out.promotion + f"; endpoint {cfg.endpoint} -> Single({cfg.model_name}@champion)")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _fig(m: dict[str, Any], name: str) -> str:
    if not m:
        return f"{name}: —"
    return (
        f"{name} precision {_pct(m.get('precision'))}, recall {_pct(m.get('recall'))} "
        f"(small faces {_pct(m.get('small_face_recall'))}), flagged/week {m.get('flagged_per_week')} "
        f"of capacity {m.get('capacity')}"
    )
