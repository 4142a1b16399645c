"""Fan-out: run one function over many items (stores, folds, partitions) on the configured backend.

The same call runs in-process, on threads, on local processes or on a Ray cluster; the backend is
a setting (``LOOPML_EXECUTOR``), not a code change, so an app written against ``fan_out`` scales
from a laptop to a cluster as is. Results always come back in input order and one failing item
never hides the others: ``FanOutError`` names the item and keeps the results that did finish.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError, LoopmlError, ValidationError, did_you_mean
from loopml.storage import executors
from loopml.storage.executors import ItemFailure

if TYPE_CHECKING:
    from loopml.config import Settings

__all__ = [
    "BACKENDS",
    "Executor",
    "FanOutError",
    "ItemFailure",
    "available_backends",
    "fan_out",
    "resolve_backend",
]

BACKENDS = ("serial", "thread", "process", "ray")
#: Chunks per worker: enough to balance uneven items, few enough to amortise dispatch.
CHUNKS_PER_WORKER = 4


class FanOutError(LoopmlError):
    """At least one item raised; the first failing item is named, all failures and results are kept.

    ``results`` has the value for every item that finished and ``None`` for the failed ones, so a
    caller can keep the good part (e.g. publish the stores that did forecast) after deciding to.
    """

    status_code = 500

    def __init__(self, failures: list[ItemFailure], results: list[Any], total: int, backend: str) -> None:
        first = failures[0]
        self.failures = failures
        self.results = results
        self.index = first.index
        self.error_type = first.error_type
        self.traceback = first.traceback
        self.backend = backend
        others = ""
        if len(failures) > 1:
            shown = ", ".join(str(f.index) for f in failures[:10]) + (" ..." if len(failures) > 10 else "")
            others = f" {len(failures)} items failed (indices {shown})."
        super().__init__(
            f"fan_out ({backend}): item {first.index} of {total} failed with {first.error_type}: "
            f"{first.message}.{others} The other {total - len(failures)} items finished; their results "
            f"are in FanOutError.results. Original traceback:\n{first.traceback}",
            field="items",
        )


@dataclass(frozen=True)
class Executor:
    """A resolved backend: which one, where (Ray address) and why it was chosen."""

    backend: str
    #: Ray only: None starts a local instance, "auto" joins this node's cluster, "ray://h:p" is Ray Client.
    address: str | None = None
    reason: str = ""

    def describe(self) -> str:
        where = (
            f" at {self.address}" if self.address else (" (local instance)" if self.backend == "ray" else "")
        )
        return f"{self.backend}{where}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "address": self.address, "reason": self.reason}


def available_backends() -> list[str]:
    """Backends usable in this environment ("ray" only when the extra is installed)."""
    return [b for b in BACKENDS if b != "ray" or executors.ray_installed()]


def resolve_backend(
    name: str | None = None, *, settings: Settings | None = None, n_items: int | None = None
) -> Executor:
    """Turn a backend name (or None: the ``executor`` setting, else automatic) into an ``Executor``.

    Automatic picks "process" when there is more than one item and more than one CPU, else
    "serial"; inside a fan-out worker it is always "serial" so nested fan-outs do not multiply
    pools. An explicit "ray" uses the Ray address from the settings when they name one.
    """
    if name is not None and not isinstance(name, str):
        raise ValidationError(
            f"backend must be a string such as 'process', got {type(name).__name__}", field="backend"
        )
    if name is None or name == "":
        if executors.in_worker():
            return Executor("serial", reason="nested fan-out inside a worker runs serially")
        configured = _settings(settings).executor
        if configured:
            return _parse(configured, "LOOPML_EXECUTOR", settings)
        cpus = os.cpu_count() or 1
        if (n_items is None or n_items > 1) and cpus > 1:
            return Executor("process", reason=f"automatic: {cpus} CPUs")
        return Executor("serial", reason="automatic: one item or one CPU")
    return _parse(name, "backend", settings)


def _parse(name: str, source: str, settings: Settings | None) -> Executor:
    value = name.strip()
    if value.startswith("ray://"):
        return _ray(value, f"from {source}")
    if value == "ray:auto":
        return _ray("auto", f"from {source}")
    if value == "ray":
        address = None
        if source == "backend":  # explicit "ray": still honour a cluster address from the settings
            configured = _settings(settings).executor
            if configured.startswith("ray://"):
                address = configured
            elif configured == "ray:auto":
                address = "auto"
        return _ray(address, f"from {source}")
    if value in BACKENDS:
        return Executor(value, reason=f"from {source}")
    raise ValidationError(
        f"{source}={name!r} is not a fan-out backend; use one of: {', '.join(BACKENDS)}, ray:auto or "
        f"ray://host:port.{did_you_mean(value, BACKENDS)}",
        field="backend",
    )


def _ray(address: str | None, reason: str) -> Executor:
    if not executors.ray_installed():
        raise ConfigError(
            "the 'ray' backend needs Ray, which is not installed: install the ray extra: "
            "pip install 'loopml[ray]' (or set LOOPML_EXECUTOR to process)",
            field="backend",
        )
    return Executor("ray", address=address, reason=reason)


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from loopml.config import load_settings

    return load_settings()


def _positive(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{field} must be a positive integer or None, got {value!r}", field=field)
    return value


def fan_out(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    backend: str | None = None,
    max_workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
    settings: Settings | None = None,
) -> list[Any]:
    """Apply ``fn`` to every item and return the results in input order.

    ``fn`` receives one item. For "process" and "ray" it and the items are pickled (``fn`` with
    cloudpickle, so a top-level function is safest; closures work but capture their variables).
    Items are sent in about ``4 x workers`` chunks. ``progress(done, total)`` is called in the
    calling thread as items finish. Every item runs even when some fail; then ``FanOutError`` is
    raised naming the first failing index, with the original traceback and the finished results.
    """
    if not callable(fn):
        raise ValidationError(f"fn must be callable, got {type(fn).__name__}", field="fn")
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValidationError(
            f"items must be an iterable of work items (list, tuple, generator), got {type(items).__name__}",
            field="items",
        )
    if progress is not None and not callable(progress):
        raise ValidationError("progress must be a callable (done, total) or None", field="progress")
    workers_wanted = _positive(max_workers, "max_workers")
    size_wanted = _positive(chunk_size, "chunk_size")
    work = list(items)
    total = len(work)
    executor = resolve_backend(backend, settings=settings, n_items=total)
    if total == 0:
        return []

    if executor.backend == "serial":
        outcomes = executors.run_serial(fn, work, progress)
    else:
        capacity = (
            executors.ray_cpus(executor.address) if executor.backend == "ray" else (os.cpu_count() or 1)
        )
        workers = workers_wanted or capacity
        size = size_wanted or max(1, math.ceil(total / (CHUNKS_PER_WORKER * workers)))
        chunks = executors.chunked(work, size)
        workers = min(workers, len(chunks))
        if executor.backend == "thread":
            outcomes = executors.run_threads(fn, chunks, total, workers, progress)
        elif executor.backend == "process":
            outcomes = executors.run_processes(fn, chunks, total, workers, progress)
        else:
            outcomes = executors.run_ray(fn, chunks, total, workers, progress, executor.address)

    failures = [o.failure for o in outcomes if not o.ok and o.failure is not None]
    results = [o.value if o.ok else None for o in outcomes]
    if failures:
        raise FanOutError(failures, results, total, executor.backend)
    return results
