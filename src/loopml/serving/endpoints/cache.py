"""Prediction caching for endpoints: per-row keys from the model version and a hash of the input row.

Versions are immutable, so ``<model>/<number>:<sha256 of the canonical row JSON>`` can only ever map
to one answer; the TTL bounds staleness of looked-up features (the row holds the entity key, not
the feature values). A cache outage never fails a request: the error is counted and the model runs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from loopml.storage.prediction_cache import PredictionCache, open_prediction_cache

log = logging.getLogger("loopml.serving.endpoints")

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def row_key(model_ref: str, row: dict[str, Any]) -> str:
    """Cache key of one input row for one model version (``ref`` is ``name/N``)."""
    digest = hashlib.sha256(orjson.dumps(row, option=_OPTS)).hexdigest()
    return f"{model_ref}:{digest}"


class EndpointCache:
    """Hit/miss accounting around a ``PredictionCache``; thread-safe counters."""

    def __init__(self, store: PredictionCache, ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = float(ttl_seconds)
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._lock = threading.Lock()

    def lookup(self, model_ref: str, rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[Any]]:
        """(keys, outputs) with ``_MISS`` where the cache had nothing."""
        keys = [row_key(model_ref, r) for r in rows]
        try:
            raw = self.store.get_many(keys)
        except Exception as exc:  # a cache outage degrades to "no cache", never to a failed request
            with self._lock:
                self.errors += 1
            log.warning("prediction cache read failed (%s); predicting without it", exc)
            raw = [None] * len(keys)
        outputs = [MISS if v is None else orjson.loads(v) for v in raw]
        hit = sum(1 for v in raw if v is not None)
        with self._lock:
            self.hits += hit
            self.misses += len(raw) - hit
        return keys, outputs

    def store_outputs(self, keys: Sequence[str], outputs: Sequence[Any]) -> None:
        try:
            self.store.set_many(
                [
                    (k, orjson.dumps(o, option=orjson.OPT_SERIALIZE_NUMPY))
                    for k, o in zip(keys, outputs, strict=True)
                ],
                self.ttl_seconds,
            )
        except Exception as exc:
            with self._lock:
                self.errors += 1
            log.warning("prediction cache write failed (%s)", exc)

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "url": self.store.url,
            "ttl_seconds": self.ttl_seconds,
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "hit_rate": (self.hits / total) if total else None,
        }


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()


class CachePool:
    """One open backend per URL, shared by every endpoint that names it (closed with the runtime)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._stores: dict[str, PredictionCache] = {}
        self._lock = threading.Lock()

    def resolve_url(self, url: str) -> str:
        return url or f"sqlite:///{self.home / 'prediction_cache.db'}"

    def get(self, url: str) -> PredictionCache:
        resolved = self.resolve_url(url)
        with self._lock:
            store = self._stores.get(resolved)
            if store is None:
                store = open_prediction_cache(resolved)
                self._stores[resolved] = store
            return store

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            try:
                store.close()
            except Exception as exc:
                log.debug("closing prediction cache failed: %s", exc)
