"""Replay simulated card traffic through an endpoint, in time order, like a payment gateway would.

The replay keeps one simulated clock. Before each request, the streaming side of the system has
pushed the user features of earlier transactions to the feature store (every ``push_every``
transactions, so features lag by at most that many transactions, as a real stream would); chargeback
labels are sent to the feedback API once the clock passes their ``label_available_at``. ``jump``
moves the clock forward without scoring (the days between two releases): the features and labels of
that stretch are delivered in bulk.

Every request is counted: answered by the model (``ok``), by the endpoint's fallback, or failed (an
exception reached the caller). The story's promise is that the last number stays zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.fraud.features import VIEW, push_frame, request_row
from loopml.errors import LoopmlError, ValidationError


@dataclass
class Served:
    """One replayed request as the caller saw it."""

    request_id: str
    txn_id: int
    phase: str
    arm: str | None
    version: int | None
    status: str
    latency_ms: float
    client_ms: float
    score: float | None
    error: str | None = None


@dataclass
class PhaseStats:
    """What one stretch of traffic did: counts per outcome and per arm, rollbacks seen."""

    phase: str
    requests: int = 0
    ok: int = 0
    fallback: int = 0
    failed: int = 0
    by_arm: dict[str, int] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    started_at: pd.Timestamp | None = None
    sim_start: pd.Timestamp | None = None
    sim_end: pd.Timestamp | None = None


class Replay:
    """Drive ``runtime.predict`` with the simulated transactions from ``start`` on."""

    def __init__(
        self,
        *,
        endpoint: str,
        runtime: Any,
        inference: Any,
        features: Any,
        transactions: pd.DataFrame,
        feature_rows: pd.DataFrame,
        start: pd.Timestamp,
        push_every: int = 25,
    ) -> None:
        if not isinstance(push_every, int) or push_every < 1:
            raise ValidationError(f"push_every={push_every!r}: give a whole number >= 1", field="push_every")
        self.endpoint = endpoint
        self.runtime = runtime
        self.inference = inference
        self.features = features
        self.tx = transactions.sort_values("txn_id", kind="stable").reset_index(drop=True)
        rows = feature_rows.set_index("txn_id").loc[self.tx["txn_id"]].reset_index()
        self.rows = push_frame(rows)
        self.ts = self.tx["ts"].to_numpy()
        self.push_every = push_every
        self.pos = int(np.searchsorted(self.ts, np.datetime64(start), side="left"))
        self.pushed = self.pos
        self.clock = pd.Timestamp(start)
        self.served: list[Served] = []
        self._labels: list[tuple[np.datetime64, str, int]] = []
        self.labels_sent = 0
        self.pushes = 0

    # -- the clock ------------------------------------------------------------------------------
    @property
    def remaining(self) -> int:
        return len(self.tx) - self.pos

    def jump(self, until: pd.Timestamp) -> int:
        """Let simulated time pass until ``until`` without scoring: returns transactions skipped."""
        until = pd.Timestamp(until)
        end = int(np.searchsorted(self.ts, np.datetime64(until), side="left"))
        skipped = max(0, end - self.pos)
        self.pos = max(self.pos, end)
        self._push()
        self.clock = max(self.clock, until)
        self.deliver_labels(self.clock)
        return skipped

    def _push(self) -> None:
        if self.pos > self.pushed:
            self.features.push(VIEW, self.rows.iloc[self.pushed : self.pos], actor="fraud-stream")
            self.pushed = self.pos
            self.pushes += 1

    def deliver_labels(self, now: pd.Timestamp | None = None) -> int:
        """Send every chargeback outcome known by ``now`` (all of them when None) to the feedback API."""
        if not self._labels:
            return 0
        cut = np.datetime64(pd.Timestamp(now)) if now is not None else None
        due = [item for item in self._labels if cut is None or item[0] <= cut]
        if not due:
            return 0
        self.inference.flush()
        items = [{"request_id": rid, "label": label} for _, rid, label in due]
        for i in range(0, len(items), 5_000):
            self.inference.feedback_many(self.endpoint, items[i : i + 5_000], actor="chargebacks")
        taken = {rid for _, rid, _ in due}
        self._labels = [item for item in self._labels if item[1] not in taken]
        self.labels_sent += len(items)
        return len(items)

    # -- traffic --------------------------------------------------------------------------------
    def run(
        self,
        phase: str,
        requests: int,
        *,
        check_every: int | None = None,
        stop: Callable[[PhaseStats], bool] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PhaseStats:
        """Score the next ``requests`` transactions; every ``check_every`` requests run the canary watchdog.

        ``stop(stats)`` is asked after each watchdog round; True ends the phase early.
        """
        if not isinstance(requests, int) or requests < 1:
            raise ValidationError(f"requests={requests!r}: give a whole number >= 1", field="requests")
        if self.remaining < requests:
            raise LoopmlError(
                f"the simulation has {self.remaining} transactions left after {self.clock}, phase {phase!r} "
                f"needs {requests}: simulate more days (FraudConfig.days) or use fewer phase_requests"
            )
        stats = PhaseStats(
            phase, started_at=pd.Timestamp.now(tz="UTC"), sim_start=pd.Timestamp(self.ts[self.pos])
        )
        for i in range(requests):
            if self.pos - self.pushed >= self.push_every:
                self._push()
            txn = self.tx.iloc[self.pos]
            self.clock = pd.Timestamp(txn.ts)
            self.deliver_labels(self.clock)
            self._one(phase, txn, stats)
            self.pos += 1
            if progress is not None:
                progress(1)
            if check_every and (i + 1) % check_every == 0:
                self.inference.flush()
                rolled = self.runtime.check_canaries()
                if rolled:
                    stats.rollbacks.extend(r for r in self.runtime.rollbacks if r["endpoint"] in rolled)
                if stop is not None and stop(stats):
                    break
        stats.sim_end = self.clock
        return stats

    def _one(self, phase: str, txn: Any, stats: PhaseStats) -> None:
        row = request_row(txn)
        t0 = time.perf_counter()
        try:
            result = self.runtime.predict(self.endpoint, [row], routing_key=str(row["user_id"]))
        except Exception as exc:  # a failed request is what the story counts; never hide it
            client_ms = (time.perf_counter() - t0) * 1000.0
            stats.requests += 1
            stats.failed += 1
            self.served.append(
                Served(
                    "",
                    int(txn.txn_id),
                    phase,
                    None,
                    None,
                    "failed",
                    client_ms,
                    client_ms,
                    None,
                    str(exc)[:300],
                )
            )
            return
        client_ms = (time.perf_counter() - t0) * 1000.0
        out = result.outputs[0] if result.outputs else None
        score = out.get("probability") if isinstance(out, dict) else None
        stats.requests += 1
        if result.status == "ok":
            stats.ok += 1
        else:
            stats.fallback += 1
        arm = result.arm or "-"
        stats.by_arm[arm] = stats.by_arm.get(arm, 0) + 1
        self.served.append(
            Served(
                result.request_id,
                int(txn.txn_id),
                phase,
                result.arm,
                result.version,
                result.status,
                float(result.latency_ms),
                client_ms,
                float(score) if isinstance(score, int | float) else None,
            )
        )
        self._labels.append((np.datetime64(txn.label_available_at), result.request_id, int(txn.label)))

    def frame(self) -> pd.DataFrame:
        """Every replayed request so far, one row each."""
        return pd.DataFrame([s.__dict__ for s in self.served])
