"""The per-process endpoint runtime: loaded models per arm, routing, resilience, logging, metrics.

Design for the hot path (a single-row predict must add well under a millisecond):
- No database query per request. A background thread polls ``lm.endpoints.change_token()`` about
  once a second and, when it moves, rebuilds the endpoint states off the request path; a request
  reads one immutable ``EndpointState`` reference, so a swap never blocks or breaks it.
- A version that fails to load *or* to verify (predicting its own input example) never replaces a
  working one: the arm keeps serving the old model, an alert fires, and the load is retried later.
- A model whose recent p99 call time is far below the endpoint's timeout (< timeout/10, and at most
  ``INLINE_MAX_SECONDS``) runs inline on the calling thread: a thread-pool hop costs more than a
  200-tree booster and its scheduling delay is what makes the tail on a busy host. Anything slower
  (or not measured yet) runs in a small thread pool so the endpoint's timeout can answer with the
  fallback while a stuck model is still busy. Both paths go through the same breaker and rescue
  logic: a circuit breaker per arm stops calling a model that keeps failing, and a failing
  canary/AB/bandit arm is rescued by the primary arm when it can be.
- Logging hands one record to the inference log's background writer (no I/O); shadows run in their
  own pool after the response is computed and append the record with their outputs attached.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import BackendUnavailableError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.serving.endpoints.breaker import CLOSED, CircuitBreaker
from loopml.serving.endpoints.cache import MISS, CachePool, EndpointCache
from loopml.serving.endpoints.features import lookup_rows
from loopml.serving.endpoints.policies import BanditRouter, Router, build_router, canary_verdict
from loopml.serving.endpoints.serving_metrics import EndpointMetrics

log = logging.getLogger("loopml.serving.endpoints")

#: Characters of a model error kept in the log record and the response.
ERROR_MAX = 500
_COLUMN = re.compile(r"column '([^']+)'")
#: A shadow backlog beyond this is skipped (and counted) rather than queued without bound.
SHADOW_BACKLOG = 1000
#: Inline execution: at most this many rows, a p99 call time below min(timeout / 10, this many seconds).
INLINE_MAX_ROWS = 16
INLINE_MAX_SECONDS = 0.002
#: A single call only overrides the measured p99 when it is 4x slower *and* above this (scheduling
#: hiccups of a busy host below it wait for the next recount instead of flipping the path).
JUMP_FLOOR = 0.002


class CallTimes:
    """Recent call times of one arm's model, to decide whether it may run inline.

    A ring of the last ``size`` durations; its p99 is recomputed every ``every`` calls (a sort of 128
    floats, ~5 us, amortised to nothing). Until ``min_calls`` calls were seen the arm counts as slow,
    so a fresh model is measured in the pool (where a timeout can still fire) before it runs inline.
    Races between threads only lose a sample, which is harmless for an estimate.
    """

    __slots__ = ("_every", "_next", "_ring", "_seen", "min_calls", "p99")

    def __init__(self, size: int = 128, every: int = 16, min_calls: int = 16) -> None:
        self._ring = [0.0] * size
        self._next = 0
        self._seen = 0
        self._every = every
        self.min_calls = min_calls
        self.p99 = math.inf

    def record(self, seconds: float) -> None:
        ring = self._ring
        i = self._next
        ring[i] = seconds
        self._next = (i + 1) % len(ring)
        self._seen += 1
        seen = self._seen
        if seconds > self.p99 * 4 and seconds > JUMP_FLOOR:  # a stall: leave the inline path at once
            self.p99 = seconds
        elif seen >= self.min_calls and (seen % self._every == 0 or seen == self.min_calls):
            values = sorted(ring[: min(seen, len(ring))])
            self.p99 = values[min(len(values) - 1, int(len(values) * 0.99))]

    def fast(self, limit: float) -> bool:
        return self.p99 < limit

    def snapshot(self) -> dict[str, Any]:
        return {"calls": self._seen, "p99_ms": None if math.isinf(self.p99) else self.p99 * 1000.0}


class ModelCallError(Exception):
    """The model (or its feature backend) failed on valid input: counts against the breaker."""


@dataclass(frozen=True)
class PredictionResult:
    """What ``predict`` returns and ``POST /v1/endpoints/{name}/predict`` sends back."""

    request_id: str
    endpoint: str
    model: str | None
    version: int | None
    arm: str | None
    outputs: list[Any]
    latency_ms: float
    status: str
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "version": self.version,
            "arm": self.arm,
            "outputs": self.outputs,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "cached": self.cached,
        }


@dataclass
class ArmState:
    """One arm of one endpoint: the policy's ref and the working model serving it (if any)."""

    name: str
    ref: str
    model: Any = None  # LoadedModel
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    error: str | None = None  # why the newest version is not the one loaded (or why nothing is)
    pending_version: int | None = None
    times: CallTimes = field(default_factory=CallTimes)

    @property
    def usable(self) -> bool:
        return self.model is not None

    @property
    def model_name(self) -> str | None:
        return None if self.model is None else self.model.version.model

    @property
    def version(self) -> int | None:
        return None if self.model is None else self.model.version.number

    @property
    def version_ref(self) -> str:
        return "" if self.model is None else f"{self.model.version.model}/{self.model.version.number}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "model": self.model_name,
            "version": self.version,
            "version_ref": self.version_ref,
            "loaded": self.usable,
            "state": "ok" if self.usable and not self.error else ("stale" if self.usable else "unavailable"),
            "error": self.error,
            "pending_version": self.pending_version,
            "circuit": self.breaker.state,
            "breaker": self.breaker.snapshot(),
            "calls": self.times.snapshot(),
        }


@dataclass(frozen=True)
class EndpointState:
    """Everything a request needs, swapped as one reference when the endpoint or its models change."""

    spec: Any  # EndpointSpec
    revision: int
    arms: dict[str, ArmState]
    shadows: list[ArmState]
    router: Router
    cache: EndpointCache | None
    timeout_s: float
    shadow_sample: float = 0.0
    inline_s: float = 0.0  # a model whose p99 call time is below this runs inline (0: never)

    @property
    def name(self) -> str:
        return str(self.spec.name)


@dataclass
class _Outcome:
    """What the pool thread reports: the arm that answered (or failed) and the attempts made."""

    arm: ArmState | None = None
    outputs: list[Any] | None = None
    cached: bool = False
    error: str | None = None
    failed_arm: ArmState | None = None
    attempts: list[tuple[ArmState, bool | None]] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LoopmlError) else str(exc)
    return text[:ERROR_MAX]


def _endpoints_service(lm: Any) -> Any:
    found = getattr(type(lm), "endpoints", None)
    if found is not None:
        return lm.endpoints
    from loopml.serving.endpoints.service import Endpoints

    return Endpoints(lm.ctx)


def _inference_service(lm: Any) -> Any:
    found = getattr(type(lm), "inference", None)
    if found is not None:
        return lm.inference
    try:
        from loopml.serving.inference import InferenceLog
    except ImportError:
        return None
    return InferenceLog(lm.ctx)


class EndpointRuntime:
    """Serve every endpoint of one loopml installation in this process.

    ``start()`` loads the endpoints and starts the watcher thread; ``close()`` stops it. Tests can
    drive it without the thread: ``refresh()``, ``check_canaries()`` and ``refresh_rewards()`` do one
    round of each background duty.
    """

    def __init__(
        self,
        lm: Any,
        *,
        poll_interval: float = 1.0,
        log_writer: Any = None,
        metrics: EndpointMetrics | None = None,
        model_threads: int = 8,
        shadow_threads: int = 2,
        breaker_failures: int = 5,
        breaker_cooldown: float = 30.0,
        watch_interval: float = 5.0,
        reward_interval: float = 5.0,
        retry_failed_seconds: float = 30.0,
        seed: int | None = None,
        inline_max_seconds: float = INLINE_MAX_SECONDS,
    ) -> None:
        if not isinstance(poll_interval, int | float) or not poll_interval > 0:
            raise ValidationError(
                f"poll_interval={poll_interval!r} must be a number > 0", field="poll_interval"
            )
        self.lm = lm
        self.poll_interval = float(poll_interval)
        self.log_writer = log_writer
        self.metrics = metrics
        self.breaker_failures = breaker_failures
        self.breaker_cooldown = breaker_cooldown
        self.watch_interval = watch_interval
        self.reward_interval = reward_interval
        self.retry_failed_seconds = retry_failed_seconds
        self.seed = seed
        self.inline_max_seconds = float(inline_max_seconds)
        self.inline_calls = 0
        self._rng = random.Random(seed)
        self._endpoints = _endpoints_service(lm)
        self._inference: Any = None
        self._states: dict[str, EndpointState] = {}
        self._token: str | None = None
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0
        self._failed: dict[int, tuple[float, str]] = {}  # version id -> (monotonic time, error)
        self._alerted: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=model_threads, thread_name_prefix="loopml-predict")
        self._shadow_pool = ThreadPoolExecutor(max_workers=shadow_threads, thread_name_prefix="loopml-shadow")
        self._shadow_backlog = 0
        self._shadow_lock = threading.Lock()
        self.shadow_skipped = 0
        self._caches = CachePool(lm.settings.home)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rollbacks: list[dict[str, Any]] = []
        self._canary_starts: dict[str, tuple[int, float]] = {}  # endpoint -> (revision, epoch started)
        if metrics is not None:
            metrics.watch(self.snapshot)

    # ------------------------------------------------------------------ lifecycle
    @property
    def inference(self) -> Any:
        if self._inference is None:
            self._inference = _inference_service(self.lm)
        return self._inference

    def start(self) -> EndpointRuntime:
        """Load every endpoint now (so the first request is served) and start the watcher thread."""
        try:
            self.refresh(force=True)
        except Exception as exc:  # the metadata DB may be down at start-up: keep trying in the background
            log.warning("endpoint runtime: initial load failed (%s); retrying in the background", exc)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="loopml-endpoints", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._shadow_pool.shutdown(wait=True, cancel_futures=False)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._caches.close()

    def __enter__(self) -> EndpointRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _watch(self) -> None:
        last_watch = last_reward = time.monotonic()
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception as exc:
                log.warning("endpoint runtime: refresh failed (%s); serving the loaded models", exc)
            now = time.monotonic()
            if now - last_reward >= self.reward_interval:
                last_reward = now
                try:
                    self.refresh_rewards()
                except Exception as exc:
                    log.warning("endpoint runtime: bandit reward refresh failed: %s", exc)
            if now - last_watch >= self.watch_interval:
                last_watch = now
                try:
                    self.check_canaries()
                except Exception as exc:
                    log.warning("endpoint runtime: canary watchdog failed: %s", exc)

    # ------------------------------------------------------------------ (re)loading
    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild endpoint states if anything changed (or a failed load is due a retry); True if rebuilt."""
        with self._refresh_lock:
            token = self._endpoints.change_token()
            now = time.monotonic()
            retry = any(now - at >= self.retry_failed_seconds for at, _ in self._failed.values())
            self._last_refresh = now
            if not force and not retry and token == self._token:
                return False
            infos = self._endpoints.list()
            states: dict[str, EndpointState] = {}
            for info in infos:
                old = self._states.get(info.name)
                try:
                    states[info.name] = self._build(info, old)
                except Exception as exc:  # one bad endpoint must not take the others down
                    log.exception("endpoint %s: cannot build its runtime state: %s", info.name, exc)
                    if old is not None:
                        states[info.name] = old
            self._states = states
            self._token = token
            return True

    def _build(self, info: Any, old: EndpointState | None) -> EndpointState:
        spec = info.spec
        policy = spec.policy
        old_arms = old.arms if old is not None else {}
        arms = {
            arm: self._arm(spec.name, arm, ref, old_arms.get(arm)) for arm, ref in policy.routes().items()
        }
        old_shadows = {a.name: a for a in old.shadows} if old is not None else {}
        shadows = []
        for ref in getattr(policy, "shadows", None) or ():
            shadows.append(self._arm(spec.name, f"shadow:{ref}", ref, old_shadows.get(f"shadow:{ref}")))
        same_policy = old is not None and old.spec.policy == policy
        router = old.router if same_policy else build_router(spec.name, policy, seed=self._seed())
        cache = None
        if spec.cache is not None:
            if old is not None and old.cache is not None and old.spec.cache == spec.cache:
                cache = old.cache
            else:
                try:
                    cache = EndpointCache(self._caches.get(spec.cache.url), spec.cache.ttl_seconds)
                except LoopmlError as exc:
                    log.warning(
                        "endpoint %s: prediction cache unavailable (%s); serving without it", spec.name, exc
                    )
        self._resolve_alert(spec.name, arms, shadows)
        return EndpointState(
            spec=spec,
            revision=int(info.revision),
            arms=arms,
            shadows=shadows,
            router=router,
            cache=cache,
            timeout_s=float(spec.timeout_ms) / 1000.0,
            shadow_sample=float(getattr(policy, "sample", 0.0)) if shadows else 0.0,
            inline_s=min(float(spec.timeout_ms) / 1000.0 / 10.0, self.inline_max_seconds),
        )

    def _seed(self) -> int | None:
        return None if self.seed is None else self._rng.randrange(2**31)

    def _arm(self, endpoint: str, arm: str, ref: str, old: ArmState | None) -> ArmState:
        registry = self.lm.registry
        try:
            version = registry.get_version(ref)
        except Exception as exc:
            return self._keep(endpoint, arm, ref, old, None, f"cannot resolve {ref!r}: {_short(exc)}")
        if old is not None and old.model is not None and old.model.version.id == version.id:
            if old.ref == ref and old.error is None:
                return old
            return ArmState(arm, ref, old.model, old.breaker, times=old.times)
        failed = self._failed.get(version.id)
        if failed is not None and time.monotonic() - failed[0] < self.retry_failed_seconds:
            return self._keep(endpoint, arm, ref, old, version.number, failed[1], alert=False)
        try:
            model = registry.load(f"{version.model}/{version.number}")
            self._verify(model)
        except Exception as exc:
            message = f"{version.model}/{version.number} failed to load or verify: {_short(exc)}"
            self._failed[version.id] = (time.monotonic(), message)
            return self._keep(endpoint, arm, ref, old, version.number, message)
        self._failed.pop(version.id, None)
        breaker = CircuitBreaker(self.breaker_failures, self.breaker_cooldown)
        log.info("endpoint %s: arm %s now serves %s/%s", endpoint, arm, version.model, version.number)
        return ArmState(arm, ref, model, breaker)

    def _keep(
        self,
        endpoint: str,
        arm: str,
        ref: str,
        old: ArmState | None,
        pending: int | None,
        message: str,
        *,
        alert: bool = True,
    ) -> ArmState:
        """Keep serving the old model (if there is one) and say why the new one is not live."""
        working = old is not None and old.model is not None
        if working:
            assert old is not None
            state = ArmState(arm, ref, old.model, old.breaker, message, pending, old.times)
            what = f"keeps serving {old.version_ref}"
        else:
            state = ArmState(
                arm, ref, None, CircuitBreaker(self.breaker_failures, self.breaker_cooldown), message, pending
            )
            what = "has no working model"
        if alert:
            log.error("endpoint %s: arm %s %s: %s", endpoint, arm, what, message)
            self._fire(endpoint, arm, ref, message, what, critical=not working)
        return state

    def _verify(self, model: Any) -> None:
        """Run the model on its stored input example (or a synthetic row) before it takes traffic."""
        example = None
        try:
            example = self.lm.registry.input_example(model.ref)
        except Exception as exc:
            log.debug("no input example for %s: %s", model.ref, exc)
        if example is None or len(example) == 0:
            example = _synthetic_row(model.signature)
            if example is None:
                return
        sample = example.head(5)
        outputs = shape_outputs(model, model.prepare(sample), len(sample))
        if len(outputs) != len(sample):
            raise ValidationError(
                f"{model.ref} returned {len(outputs)} outputs for {len(sample)} example rows"
            )

    def _fire(self, endpoint: str, arm: str, ref: str, message: str, what: str, *, critical: bool) -> None:
        key = f"endpoint.load_failed:{endpoint}"
        try:
            self.lm.alerts.fire(
                key,
                severity="critical" if critical else "warning",
                title=f"Endpoint {endpoint}: arm {arm} {what}",
                detail=message,
                source="endpoints",
                data={"endpoint": endpoint, "arm": arm, "ref": ref},
            )
            self._alerted.add(endpoint)
        except Exception as exc:  # alerting is best effort; serving goes on
            log.warning("could not fire alert %s: %s", key, exc)

    def _resolve_alert(
        self, endpoint: str, arms: Mapping[str, ArmState], shadows: Sequence[ArmState]
    ) -> None:
        if endpoint not in self._alerted:
            return
        if all(a.usable and a.error is None for a in (*arms.values(), *shadows)):
            try:
                self.lm.alerts.resolve(
                    f"endpoint.load_failed:{endpoint}", reason="the endpoint's models load again"
                )
                self._alerted.discard(endpoint)
            except Exception as exc:
                log.warning("could not resolve alert for %s: %s", endpoint, exc)

    # ------------------------------------------------------------------ predicting
    def state(self, name: str) -> EndpointState:
        """The live state of endpoint ``name`` (NotFoundError with close names when unknown)."""
        state = self._states.get(name)
        if state is not None:
            return state
        if time.monotonic() - self._last_refresh > 0.25:  # created a moment ago? look once, rate limited
            try:
                self.refresh()
            except Exception as exc:
                log.debug("refresh on unknown endpoint %s failed: %s", name, exc)
            state = self._states.get(name)
            if state is not None:
                return state
        raise NotFoundError(
            f"endpoint {name!r} does not exist." + did_you_mean(str(name), list(self._states)), field="name"
        )

    def predict(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        routing_key: str | None = None,
    ) -> PredictionResult:
        """Answer one request (one or many rows) from endpoint ``name`` under its policy."""
        start = time.perf_counter()
        state, rows, rid, arm = self._begin(name, rows, request_id, routing_key)
        attempts: list[tuple[ArmState, bool | None]] = []
        if arm is None:
            return self._finish(
                state, rows, rid, routing_key, start, _Outcome(error=self._no_arm_error(state))
            )
        if self._inline(state, arm, rows):
            return self._finish(state, rows, rid, routing_key, start, self._timed(state, arm, rows, attempts))
        future = self._pool.submit(self._timed, state, arm, rows, attempts)
        try:
            outcome = future.result(timeout=state.timeout_s)
        except FutureTimeout:
            outcome = self._timed_out(state, arm, attempts, future)
        return self._finish(state, rows, rid, routing_key, start, outcome)

    async def predict_async(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        routing_key: str | None = None,
    ) -> PredictionResult:
        """``predict`` for an event loop: routing here, the model call in the pool, awaited with the timeout."""
        start = time.perf_counter()
        state, rows, rid, arm = self._begin(name, rows, request_id, routing_key)
        attempts: list[tuple[ArmState, bool | None]] = []
        if arm is None:
            return self._finish(
                state, rows, rid, routing_key, start, _Outcome(error=self._no_arm_error(state))
            )
        if self._inline(state, arm, rows):  # microseconds of model time: a pool hop would cost more
            return self._finish(state, rows, rid, routing_key, start, self._timed(state, arm, rows, attempts))
        future = self._pool.submit(self._timed, state, arm, rows, attempts)
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), state.timeout_s)
        except TimeoutError:
            outcome = self._timed_out(state, arm, attempts, future)
        return self._finish(state, rows, rid, routing_key, start, outcome)

    def _begin(
        self, name: str, rows: Any, request_id: str | None, routing_key: str | None
    ) -> tuple[EndpointState, list[dict[str, Any]], str, ArmState | None]:
        state = self.state(name)
        rows = check_rows(rows, state.spec.max_batch_rows)
        if request_id is None:
            rid = _request_ids.next()
        elif isinstance(request_id, str) and 0 < len(request_id) <= 128 and request_id.isprintable():
            rid = request_id
        else:
            raise ValidationError(
                f"request_id={request_id!r}: send a printable string of 1-128 characters (or omit it)",
                field="request_id",
            )
        if routing_key is not None and not isinstance(routing_key, str):
            if isinstance(routing_key, int | float) and not isinstance(routing_key, bool):
                routing_key = str(routing_key)
            else:
                raise ValidationError(
                    f"routing_key={routing_key!r}: send a string or a number", field="routing_key"
                )
        if routing_key is None and state.spec.policy.kind == "ab":
            key_field = state.spec.policy.routing_key
            value = rows[0].get(key_field)
            routing_key = None if value is None else str(value)
        arm = state.arms.get(state.router.choose(routing_key, rid))
        if arm is None or not arm.usable or not arm.breaker.allow():
            if arm is not None and arm.usable and self.metrics is not None:
                self.metrics.error(state.name, arm.version_ref, arm.name, "circuit_open")
            arm = self._rescue(state, arm)
        return state, rows, rid, arm

    def _rescue(self, state: EndpointState, failed: ArmState | None) -> ArmState | None:
        primary = state.arms.get(state.router.primary)
        if primary is None or primary is failed or not primary.usable or not primary.breaker.allow():
            return None
        return primary

    def _no_arm_error(self, state: EndpointState) -> str:
        parts = []
        for arm in state.arms.values():
            if not arm.usable:
                parts.append(f"arm {arm.name}: {arm.error or 'no model loaded'}")
            elif arm.breaker.state != CLOSED:
                parts.append(f"arm {arm.name}: circuit {arm.breaker.state} after repeated failures")
        return "no model can answer: " + ("; ".join(parts) or "every arm is unavailable")

    def _inline(self, state: EndpointState, arm: ArmState, rows: list[dict[str, Any]]) -> bool:
        """Run this call on the caller's thread? Only small requests to an arm measured to be fast."""
        if len(rows) <= INLINE_MAX_ROWS and arm.times.p99 < state.inline_s:
            self.inline_calls += 1
            return True
        return False

    def _timed(
        self, state: EndpointState, arm: ArmState, rows: list[dict[str, Any]], attempts: list[Any]
    ) -> _Outcome:
        """``_execute`` and the arm's call time (failures and bad input count: they took time too)."""
        t0 = time.perf_counter()
        try:
            return self._execute(state, arm, rows, attempts)
        finally:
            arm.times.record(time.perf_counter() - t0)

    def _execute(
        self, state: EndpointState, arm: ArmState, rows: list[dict[str, Any]], attempts: list[Any]
    ) -> _Outcome:
        """Pool thread: call the chosen arm; on a model failure, let the primary arm answer instead."""
        try:
            outputs, cached = self._call(state, arm, rows)
            attempts.append((arm, True))
            return _Outcome(arm, outputs, cached, attempts=attempts)
        except ValidationError:
            attempts.append((arm, None))
            raise
        except Exception as exc:
            attempts.append((arm, False))
            error = _short(exc.__cause__ or exc) if isinstance(exc, ModelCallError) else _short(exc)
        rescue = self._rescue(state, arm)
        if rescue is not None:
            try:
                outputs, cached = self._call(state, rescue, rows)
                attempts.append((rescue, True))
                return _Outcome(rescue, outputs, cached, error, failed_arm=arm, attempts=attempts)
            except ValidationError:
                attempts.append((rescue, None))
                raise
            except Exception:
                attempts.append((rescue, False))
        return _Outcome(arm, None, False, error, attempts=attempts)

    def _call(
        self, state: EndpointState, arm: ArmState, rows: list[dict[str, Any]]
    ) -> tuple[list[Any], bool]:
        cache = state.cache
        keys: list[str] = []
        todo = rows
        outputs: list[Any] = []
        if cache is not None:
            keys, outputs = cache.lookup(arm.version_ref, rows)
            missing = [i for i, out in enumerate(outputs) if out is MISS]
            if not missing:
                return outputs, True
            todo = [rows[i] for i in missing]
        model_rows = todo
        if state.spec.features is not None:
            try:
                model_rows = lookup_rows(self.lm.features, state.spec.features, todo)
            except ValidationError:
                raise
            except Exception as exc:
                raise ModelCallError(f"feature lookup failed: {_short(exc)}") from exc
        model = arm.model
        if len(model_rows) > 1:
            check_row_columns(model.signature, model_rows)
        else:  # a list value would make the signature read the dict as columns, not as one row
            for key, value in model_rows[0].items():
                if isinstance(value, list | tuple):
                    raise ValidationError(
                        f"rows[0].{key} is a list; send one scalar per column (more rows go in 'rows')",
                        field=f"rows[0].{key}",
                    )
        try:
            X = model.prepare(model_rows[0]) if len(model_rows) == 1 else model.prepare(model_rows)
        except ValidationError as exc:
            if exc.field is None:  # the signature names the column in its message: expose it as the field
                found = _COLUMN.search(str(exc))
                if found:
                    exc.field = (
                        f"rows[0].{found.group(1)}" if len(model_rows) == 1 else f"rows.{found.group(1)}"
                    )
            raise
        except Exception as exc:  # odd JSON (nested objects, mixed types) that pandas cannot take
            raise ValidationError(
                f"rows cannot be read as input of {arm.version_ref} ({type(exc).__name__}: {exc}); "
                "send one scalar per column",
                field="rows",
            ) from None
        try:
            fresh = shape_outputs(model, X, len(model_rows))
        except Exception as exc:
            raise ModelCallError(_short(exc)) from exc
        if cache is None:
            return fresh, False
        cache.store_outputs([keys[i] for i in missing], fresh)
        for i, out in zip(missing, fresh, strict=True):
            outputs[i] = out
        return outputs, False

    def _timed_out(
        self, state: EndpointState, arm: ArmState, attempts: list[Any], future: Future[Any]
    ) -> _Outcome:
        future.cancel()  # only helps when it has not started yet
        done = {id(a) for a, _ in attempts}
        for a, ok in list(attempts):
            if ok is False:
                a.breaker.record_failure()
        if id(arm) not in done or not attempts:
            arm.breaker.record_failure()
        arm.times.record(state.timeout_s)  # still running: at least this slow, keep it in the pool
        if self.metrics is not None:
            self.metrics.error(state.name, arm.version_ref, arm.name, "timeout")
        return _Outcome(
            arm,
            None,
            False,
            f"timed out after {state.spec.timeout_ms:g} ms (endpoint timeout_ms)",
            attempts=[],
        )

    def _finish(
        self,
        state: EndpointState,
        rows: list[dict[str, Any]],
        rid: str,
        routing_key: str | None,
        start: float,
        outcome: _Outcome,
    ) -> PredictionResult:
        for a, ok in outcome.attempts:
            if ok is True:
                a.breaker.record_success()
            elif ok is False:
                a.breaker.record_failure()
                if self.metrics is not None:
                    self.metrics.error(state.name, a.version_ref, a.name, "model_error")
            else:
                a.breaker.record_neutral()
        arm = outcome.arm
        failed = outcome.failed_arm
        if outcome.outputs is not None and arm is not None:
            status = "ok"
            outputs = outcome.outputs
        else:
            fallback = state.spec.fallback
            if fallback is None:
                self._log(state, rows, rid, routing_key, start, arm, [], "error", outcome.error, None)
                if self.metrics is not None:
                    self.metrics.observe(
                        state.name,
                        arm.version_ref if arm else "",
                        arm.name if arm else "",
                        "error",
                        time.perf_counter() - start,
                        len(rows),
                    )
                raise BackendUnavailableError(
                    f"endpoint {state.name!r} could not answer: {outcome.error}. Set a fallback on the "
                    "endpoint to serve a default answer instead of this 503.",
                    field="name",
                )
            status = fallback.status
            outputs = [fallback.value] * len(rows)
        latency_ms = (time.perf_counter() - start) * 1000.0
        answered = arm
        if self.metrics is not None:
            self.metrics.observe(
                state.name,
                answered.version_ref if answered else "",
                answered.name if answered else "",
                status,
                latency_ms / 1000.0,
                len(rows),
            )
        # The log keeps the routing decision: a failed canary rescued by the baseline is a canary error.
        logged_arm = failed if failed is not None else arm
        log_status = "error" if failed is not None else status
        self._log(
            state, rows, rid, routing_key, start, logged_arm, outputs, log_status, outcome.error, latency_ms
        )
        return PredictionResult(
            request_id=rid,
            endpoint=state.name,
            model=answered.model_name if answered else None,
            version=answered.version if answered else None,
            arm=answered.name if answered else None,
            outputs=outputs,
            latency_ms=latency_ms,
            status=status,
            cached=outcome.cached,
        )

    # ------------------------------------------------------------------ logging and shadows
    def _log(
        self,
        state: EndpointState,
        rows: list[dict[str, Any]],
        rid: str,
        routing_key: str | None,
        start: float,
        arm: ArmState | None,
        outputs: list[Any],
        status: str,
        error: str | None,
        latency_ms: float | None,
    ) -> None:
        writer = self.log_writer
        shadows = state.shadows if status == "ok" else ()
        run_shadow = bool(shadows) and (
            state.shadow_sample >= 1.0 or self._rng.random() < state.shadow_sample
        )
        if writer is None and not run_shadow:
            return
        if latency_ms is None:
            latency_ms = (time.perf_counter() - start) * 1000.0
        fields = {
            "request_id": rid,
            "endpoint": state.name,
            "model": arm.model_name if arm is not None and arm.model_name else (arm.ref if arm else ""),
            "version": arm.version if arm is not None else None,
            "arm": arm.name if arm is not None else None,
            "inputs": rows,
            "outputs": outputs,
            "latency_ms": latency_ms,
            "status": status,
            "error": error,
            "routing_key": routing_key,
        }
        if run_shadow:
            with self._shadow_lock:
                queued = self._shadow_backlog < SHADOW_BACKLOG
                if queued:
                    self._shadow_backlog += 1
                else:
                    self.shadow_skipped += 1
            if queued:
                try:
                    self._shadow_pool.submit(self._run_shadows, state, fields)
                    return
                except RuntimeError:  # shutting down: log the answer without the shadow
                    with self._shadow_lock:
                        self._shadow_backlog -= 1
        self._append(fields)

    def _append(self, fields: dict[str, Any]) -> None:
        if self.log_writer is None:
            return
        try:
            self.log_writer.append(_record_class()(**fields))
        except Exception as exc:  # the log must never fail a request that was answered
            log.warning("inference log append failed for %s: %s", fields.get("request_id"), exc)

    def _run_shadows(self, state: EndpointState, fields: dict[str, Any]) -> None:
        try:
            rows = fields["inputs"]
            primary = fields["outputs"]
            results = []
            for shadow in state.shadows:
                t0 = time.perf_counter()
                entry: dict[str, Any] = {
                    "arm": shadow.name,
                    "model": shadow.model_name,
                    "version": shadow.version,
                }
                if not shadow.usable:
                    entry.update(
                        outputs=None, latency_ms=None, error=shadow.error or "no model loaded", agreement=None
                    )
                    results.append(entry)
                    continue
                try:
                    sub = EndpointState(
                        state.spec, state.revision, {}, [], state.router, None, state.timeout_s
                    )
                    outputs, _ = self._call(sub, shadow, rows)
                    seconds = time.perf_counter() - t0
                    disagree = sum(1 for a, b in zip(primary, outputs, strict=True) if not agree(a, b))
                    entry.update(
                        outputs=outputs,
                        latency_ms=seconds * 1000.0,
                        error=None,
                        agreement=1.0 - disagree / len(rows),
                    )
                    if self.metrics is not None:
                        self.metrics.shadow(state.name, shadow.version_ref, len(rows), disagree, seconds)
                except Exception as exc:
                    entry.update(
                        outputs=None,
                        latency_ms=(time.perf_counter() - t0) * 1000.0,
                        error=_short(exc),
                        agreement=None,
                    )
                    if self.metrics is not None:
                        self.metrics.error(state.name, shadow.version_ref, shadow.name, "shadow_error")
                results.append(entry)
            fields["shadow"] = results
            self._append(fields)
        finally:
            with self._shadow_lock:
                self._shadow_backlog -= 1

    def drain_shadows(self, timeout: float = 5.0) -> bool:
        """Wait until queued shadow calls are done (tests, shutdown); True when drained."""
        deadline = time.monotonic() + timeout
        while self._shadow_backlog > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._shadow_backlog <= 0

    # ------------------------------------------------------------------ background duties
    def check_canaries(self, now: float | None = None) -> list[str]:
        """Roll back every canary whose window stats break its RollbackRule; returns the endpoints rolled back.

        Each side is judged on its own traffic only: requests served by the arm's *current* model
        version since max(now - window, the moment this canary became active). A new canary therefore
        never inherits the requests (and errors) of the canary before it, and ``min_requests`` counts
        its own requests; the baseline is measured over the very same interval.
        """
        inference = self.inference
        if inference is None:
            return []
        rolled = []
        now = time.time() if now is None else now
        from datetime import UTC, datetime

        for name, state in list(self._states.items()):
            policy = state.spec.policy
            if policy.kind != "canary":
                continue
            canary, baseline = state.arms.get("canary"), state.arms.get("baseline")
            if canary is None or not canary.usable:
                continue  # a canary without a working model served nothing: the baseline answered
            rule = policy.rollback
            since = datetime.fromtimestamp(
                max(now - rule.window_seconds, self._canary_start(name, state)), tz=UTC
            )
            c_stats = inference.window_stats(
                name, since=since, model=canary.model_name, version=canary.version
            ).get("canary")
            b_stats = None
            enough = c_stats is not None and c_stats.n >= rule.min_requests
            if enough and baseline is not None and baseline.usable:  # else the verdict needs no baseline
                b_stats = inference.window_stats(
                    name, since=since, model=baseline.model_name, version=baseline.version
                ).get("baseline")
            verdict = canary_verdict(rule, b_stats, c_stats)
            if not verdict.rollback:
                continue
            try:
                self._endpoints.rollback_canary(
                    name, actor="canary-watchdog", reason=verdict.reason, canary=policy.canary
                )
            except LoopmlError as exc:  # another process won, or someone changed the policy meanwhile
                log.info("endpoint %s: canary rollback not applied: %s", name, exc)
                continue
            log.warning("endpoint %s: canary %s rolled back: %s", name, policy.canary, verdict.reason)
            self.rollbacks.append({"endpoint": name, "canary": policy.canary, "reason": verdict.reason})
            if self.metrics is not None:
                self.metrics.rollbacks.labels(name).inc()
            try:
                self.lm.alerts.fire(
                    f"endpoint.canary_rolled_back:{name}",
                    severity="warning",
                    title=f"Endpoint {name}: canary {policy.canary} rolled back",
                    detail=verdict.reason,
                    source="endpoints",
                    data={"endpoint": name, "canary": policy.canary},
                )
            except Exception as exc:
                log.warning("could not fire the rollback alert for %s: %s", name, exc)
            rolled.append(name)
        if rolled:
            self.refresh(force=True)
        return rolled

    def _canary_start(self, name: str, state: EndpointState) -> float:
        """Epoch seconds since which the current canary (same baseline and canary refs) has been live.

        Walks the endpoint's revisions back from the loaded one: weight changes keep the start, any
        other policy in between (a rollback, a different canary) ends the run. Cached per revision;
        0.0 (the plain window) when the history cannot be read, retried on the next round.
        """
        cached = self._canary_starts.get(name)
        if cached is not None and cached[0] == state.revision:
            return cached[1]
        policy = state.spec.policy
        started = None
        try:
            for rev in self._endpoints.history(name):
                if rev.revision > state.revision:
                    continue  # newer than what this process serves: the watcher has not loaded it yet
                p = rev.spec.policy
                same = (
                    rev.action != "delete"
                    and p.kind == "canary"
                    and p.canary == policy.canary
                    and p.baseline == policy.baseline
                )
                if not same:
                    break
                started = rev.at
        except LoopmlError as exc:
            log.warning("endpoint %s: cannot read its history for the canary window: %s", name, exc)
            return 0.0
        if started is None:
            return 0.0
        if started.tzinfo is None:
            from datetime import UTC

            started = started.replace(tzinfo=UTC)
        epoch = started.timestamp()
        self._canary_starts[name] = (state.revision, epoch)
        return epoch

    def refresh_rewards(self) -> None:
        """Give every bandit router fresh reward counts from the inference log."""
        inference = self.inference
        if inference is None:
            return
        for name, state in list(self._states.items()):
            if isinstance(state.router, BanditRouter):
                state.router.update(inference.reward_stats(name))

    # ------------------------------------------------------------------ status
    def status(self, name: str) -> dict[str, Any]:
        """Loaded versions per arm, circuit states, cache hit rate, routing state: for ``/status``."""
        state = self.state(name)
        return _state_snapshot(state)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: _state_snapshot(state) for name, state in list(self._states.items())}

    def endpoint_names(self) -> list[str]:
        return sorted(self._states)


def _state_snapshot(state: EndpointState) -> dict[str, Any]:
    arms = {name: arm.snapshot() for name, arm in state.arms.items()}
    return {
        "endpoint": state.name,
        "revision": state.revision,
        "policy": state.spec.policy.to_dict(),
        "timeout_ms": state.spec.timeout_ms,
        "arms": arms,
        "shadows": {arm.name: arm.snapshot() for arm in state.shadows},
        "routing": state.router.snapshot(),
        "cache": None if state.cache is None else state.cache.stats(),
        "fallback": None if state.spec.fallback is None else state.spec.fallback.to_dict(),
    }


# ---------------------------------------------------------------------- helpers (also used by the API)


def check_rows(rows: Any, max_rows: int) -> list[dict[str, Any]]:
    """A non-empty list of row objects no longer than the endpoint allows."""
    if isinstance(rows, Mapping):
        rows = [rows]
    if not isinstance(rows, list | tuple):
        raise ValidationError(
            f"rows must be a list of objects (column -> value); got {type(rows).__name__}", field="rows"
        )
    if not rows:
        raise ValidationError("rows is empty: send at least one row", field="rows")
    if len(rows) > max_rows:
        raise ValidationError(
            f"rows has {len(rows)} rows; this endpoint takes at most {max_rows} per request "
            "(max_batch_rows): split the batch",
            field="rows",
        )
    out = rows if isinstance(rows, list) else list(rows)
    for i, row in enumerate(out):
        if not isinstance(row, dict):
            if isinstance(row, Mapping):
                out[i] = dict(row)
                continue
            raise ValidationError(
                f"rows[{i}] must be an object (column -> value); got {type(row).__name__}", field=f"rows[{i}]"
            )
        if not row:
            raise ValidationError(f"rows[{i}] is empty: send column -> value pairs", field=f"rows[{i}]")
    return out


def check_row_columns(signature: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Per-row column check for batches: a DataFrame would silently turn a missing key into NaN."""
    names = signature.names
    wanted = set(names)
    for i, row in enumerate(rows):
        if row.keys() == wanted:
            continue
        missing = [n for n in names if n not in row]
        if missing:
            raise ValidationError(
                f"rows[{i}]: column {missing[0]!r} is missing; every row needs {', '.join(names)}",
                field=f"rows[{i}].{missing[0]}",
            )
        extra = [str(k) for k in row if k not in wanted]
        raise ValidationError(
            f"rows[{i}]: column {extra[0]!r} is not in the model signature ({', '.join(names)}); drop it",
            field=f"rows[{i}].{extra[0]}",
        )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _RequestIds:
    """Random 32-hex-digit request ids (as ``uuid4().hex``), drawn from the OS 256 at a time.

    Why: one ``os.urandom`` call is a system call, which on sandboxed hosts costs ~10 us - more than
    the rest of the routing. Ids stay cryptographically random (a client cannot guess another
    client's id to send it feedback); a forked child drops the parent's batch so the two never share
    ids.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._pos = 0

    def next(self) -> str:
        with self._lock:
            pos = self._pos
            if pos >= len(self._hex):
                self._hex = os.urandom(16 * self.BATCH).hex()
                pos = 0
            self._pos = pos + 32
            return self._hex[pos : pos + 32]

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._pos = 0


_request_ids = _RequestIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_request_ids.reset)

_RECORD: Any = None


def _record_class() -> Any:
    """InferenceRecord, imported on first use (the log package is optional) and then kept."""
    global _RECORD
    if _RECORD is None:
        from loopml.serving.inference.records import InferenceRecord

        _RECORD = InferenceRecord
    return _RECORD


def shape_outputs(model: Any, X: Any, n: int) -> list[Any]:
    """JSON outputs: ``{"label", "probability"}`` per row for binary classifiers (probability of the
    positive class, the second of ``classes``), ``{"label", "probabilities"}`` for multiclass, the
    value for regressors. A wrong count or a non-finite number is a model failure, not an answer."""
    predictor = model.predictor
    if model.is_classifier:
        proba = np.asarray(predictor.predict_proba(X), dtype=float)
        classes = [_py(c) for c in model.classes]
        if proba.ndim != 2 or proba.shape != (n, len(classes)):
            raise ValueError(
                f"predict_proba returned shape {proba.shape} for {n} rows and {len(classes)} classes"
            )
        if n <= INLINE_MAX_ROWS:  # a few rows: plain floats beat numpy's per-call overhead
            table = proba.tolist()
            if not all(math.isfinite(p) for row in table for p in row):
                raise ValueError("the model returned NaN or infinite probabilities")
            best = [row.index(max(row)) for row in table]  # first maximum, as argmax
            if len(classes) == 2:
                return [
                    {"label": classes[b], "probability": row[1]} for b, row in zip(best, table, strict=True)
                ]
            return [
                {"label": classes[b], "probabilities": {str(c): p for c, p in zip(classes, row, strict=True)}}
                for b, row in zip(best, table, strict=True)
            ]
        if not np.isfinite(proba).all():
            raise ValueError("the model returned NaN or infinite probabilities")
        best = proba.argmax(axis=1).tolist()
        if len(classes) == 2:
            return [
                {"label": classes[b], "probability": p}
                for b, p in zip(best, proba[:, 1].tolist(), strict=True)
            ]
        return [
            {"label": classes[b], "probabilities": {str(c): p for c, p in zip(classes, row, strict=True)}}
            for b, row in zip(best, proba.tolist(), strict=True)
        ]
    values = np.asarray(predictor.predict(X))
    if values.ndim == 0 or len(values) != n:
        raise ValueError(f"the model returned {values.size} values for {n} rows")
    out = values.tolist() if values.dtype != object else [_py(v) for v in values]
    for v in out:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("the model returned NaN or infinity")
    return out


def agree(a: Any, b: Any) -> bool:
    """Whether a shadow's answer matches the primary's: same label, or values within 1e-6 (relative)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.get("label") == b.get("label")
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def _synthetic_row(signature: Any) -> pd.DataFrame | None:
    """A plausible one-row input from the signature, for versions registered without an example."""
    row: dict[str, Any] = {}
    for col in signature.columns:
        if col.dtype in ("int", "float"):
            row[col.name] = 0 if col.dtype == "int" else 0.0
        elif col.dtype == "bool":
            row[col.name] = False
        elif col.dtype == "str":
            row[col.name] = ""
        elif col.dtype == "category":
            if not col.categories:
                return None
            row[col.name] = pd.Categorical([col.categories[0]], categories=list(col.categories))
            continue
        elif col.dtype == "datetime":
            row[col.name] = pd.Timestamp.now(tz="UTC").tz_localize(None)
        else:
            return None
    frame = pd.DataFrame({k: (v if isinstance(v, pd.Categorical) else [v]) for k, v in row.items()})
    if any(c.dtype == "int" for c in signature.columns):
        for col in signature.columns:
            if col.dtype == "int":
                frame[col.name] = frame[col.name].astype("int64")
    return frame
