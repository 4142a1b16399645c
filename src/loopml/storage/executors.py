"""Backends that run one function over many items: in-process, threads, processes or Ray.

This is the only module that imports ray (lazily, inside ``run_ray``) so that ``loopml`` works
without the extra. Every backend runs items in chunks through ``_run_chunk`` and returns one
``Outcome`` per item in input order; a failing item becomes an ``ItemFailure`` instead of an
exception so the other items' results survive and the caller (``loopml.compute``) decides how to
report it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import cloudpickle

from loopml.errors import BackendUnavailableError, ConfigError

Progress = Callable[[int, int], None]

#: True inside a process-pool or Ray worker, so a nested ``fan_out`` with the default backend runs
#: serially instead of starting a pool per worker.
_IN_WORKER = False


@dataclass(frozen=True)
class ItemFailure:
    """Why one item failed; carries text, not the exception, because exceptions may not pickle."""

    index: int
    error_type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None
    failure: ItemFailure | None = None


Chunk = tuple[int, list[Any]]


def in_worker() -> bool:
    """Whether this code runs inside a fan-out worker (process pool or Ray task)."""
    return _IN_WORKER or os.environ.get("LOOPML_FANOUT_WORKER") == "1"


def chunked(items: Sequence[Any], size: int) -> list[Chunk]:
    """Split items into (start index, items) chunks so each task amortises its dispatch overhead."""
    return [(start, list(items[start : start + size])) for start in range(0, len(items), size)]


def _run_chunk(fn: Callable[[Any], Any], start: int, items: list[Any]) -> list[Outcome]:
    outcomes = []
    for offset, item in enumerate(items):
        try:
            outcomes.append(Outcome(True, fn(item)))
        except Exception as exc:  # one bad item must not lose the others
            outcomes.append(
                Outcome(
                    False,
                    failure=ItemFailure(
                        index=start + offset,
                        error_type=type(exc).__name__,
                        message=str(exc),
                        traceback=traceback.format_exc(),
                    ),
                )
            )
    return outcomes


def _run_pickled_chunk(fn_bytes: bytes, start: int, items: list[Any]) -> list[Outcome]:
    global _IN_WORKER
    _IN_WORKER = True
    return _run_chunk(cloudpickle.loads(fn_bytes), start, items)


_WORKER_FN: Callable[[Any], Any] | None = None


def _init_process_worker(fn_bytes: bytes) -> None:
    global _IN_WORKER, _WORKER_FN
    _IN_WORKER = True
    os.environ["LOOPML_FANOUT_WORKER"] = "1"
    _WORKER_FN = cloudpickle.loads(fn_bytes)


def _run_worker_chunk(start: int, items: list[Any]) -> list[Outcome]:
    assert _WORKER_FN is not None, "process worker was not initialised"
    return _run_chunk(_WORKER_FN, start, items)


def _lost(start: int, items: list[Any], exc: BaseException, where: str) -> list[Outcome]:
    """Outcomes for a chunk whose worker died, so the caller can name the items it was running."""
    text = "".join(traceback.format_exception(exc))
    return [
        Outcome(
            False,
            failure=ItemFailure(
                index=start + offset,
                error_type=type(exc).__name__,
                message=f"the {where} running items {start}..{start + len(items) - 1} was lost: {exc}",
                traceback=text,
            ),
        )
        for offset in range(len(items))
    ]


def _place(results: list[Outcome | None], start: int, outcomes: list[Outcome]) -> int:
    results[start : start + len(outcomes)] = outcomes
    return len(outcomes)


def run_serial(fn: Callable[[Any], Any], items: Sequence[Any], progress: Progress | None) -> list[Outcome]:
    results: list[Outcome] = []
    for index, item in enumerate(items):
        results.extend(_run_chunk(fn, index, [item]))
        if progress is not None:
            progress(index + 1, len(items))
    return results


def _drain(
    futures: dict[Future, Chunk],
    results: list[Outcome | None],
    total: int,
    progress: Progress | None,
    where: str,
) -> None:
    done_items = 0
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            start, chunk = futures[future]
            try:
                outcomes = future.result()
            except Exception as exc:  # a crashed worker (BrokenProcessPool, pickling error ...)
                outcomes = _lost(start, chunk, exc, where)
            done_items += _place(results, start, outcomes)
            if progress is not None:
                progress(done_items, total)


def run_threads(
    fn: Callable[[Any], Any], chunks: list[Chunk], total: int, workers: int, progress: Progress | None
) -> list[Outcome]:
    results: list[Outcome | None] = [None] * total
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loopml-fanout") as pool:
        futures = {pool.submit(_run_chunk, fn, start, chunk): (start, chunk) for start, chunk in chunks}
        _drain(futures, results, total, progress, "thread")
    return results  # type: ignore[return-value]


def process_context() -> multiprocessing.context.BaseContext:
    """The start method for worker processes.

    Forking a parent that already runs threads (the tracker's writer, OpenMP in LightGBM, DuckDB)
    can deadlock the child, so we avoid "fork": "forkserver" where the platform has it (Linux; the
    default from Python 3.14), otherwise the platform's "spawn". Both need ``fn`` and the items to
    pickle and scripts to guard their entry point with ``if __name__ == "__main__":``.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def run_processes(
    fn: Callable[[Any], Any], chunks: list[Chunk], total: int, workers: int, progress: Progress | None
) -> list[Outcome]:
    fn_bytes = _dump_fn(fn)
    results: list[Outcome | None] = [None] * total
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=process_context(),
        initializer=_init_process_worker,
        initargs=(fn_bytes,),
    ) as pool:
        futures = {pool.submit(_run_worker_chunk, start, chunk): (start, chunk) for start, chunk in chunks}
        _drain(futures, results, total, progress, "worker process")
    return results  # type: ignore[return-value]


def _dump_fn(fn: Callable[[Any], Any], *, local_modules_by_value: bool = False) -> bytes:
    module = _local_module(fn) if local_modules_by_value else None
    if module is not None:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(fn)
    except Exception as exc:
        raise ConfigError(
            f"fan_out could not pickle fn {fn!r} to send it to workers ({type(exc).__name__}: {exc}); "
            "pass a top-level function, or use backend='thread' or 'serial'"
        ) from exc
    finally:
        if module is not None:
            cloudpickle.unregister_pickle_by_value(module)


def _local_module(fn: Callable[[Any], Any]) -> Any:
    """The module of ``fn`` when it is the user's own code (a script, notebook or test file).

    Ray workers import by name only what is installed in their environment, so a function from a
    module that is not installed would fail there with ModuleNotFoundError; such a module is pickled
    by value instead. loopml and installed packages stay by reference (workers must have them).
    """
    name = getattr(fn, "__module__", None)
    module = sys.modules.get(name) if name else None
    if module is None or name == "__main__" or name.split(".")[0] == "loopml":
        return None  # __main__ is pickled by value already
    path = getattr(module, "__file__", None)
    if not path:
        return None
    installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    resolved = os.path.realpath(path)
    if any(resolved.startswith(os.path.realpath(root) + os.sep) for root in installed):
        return None
    if "site-packages" in resolved.split(os.sep) or "dist-packages" in resolved.split(os.sep):
        return None
    return module


# -- Ray -------------------------------------------------------------------------------------------


def ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the 'ray' executor needs Ray: install the ray extra: pip install 'loopml[ray]'", field="backend"
        ) from exc
    return ray


def ensure_ray(address: str | None) -> Any:
    """Connect to Ray once per process: reuse a running session, else start or join one.

    ``address`` None starts a local instance sized to this machine; "auto" joins the cluster this
    node belongs to; "ray://host:port" connects through Ray Client. A session that is already
    initialised (for example by the caller with its own options) is used as is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
    try:
        ray.init(address=address, **options)
    except Exception as exc:
        where = "a local Ray instance" if address is None else f"Ray at {address!r}"
        raise BackendUnavailableError(
            f"could not start or reach {where} ({type(exc).__name__}: {exc}); check LOOPML_EXECUTOR "
            "(ray, ray:auto or ray://host:port) and that the cluster runs the same Ray and Python versions",
            field="executor",
        ) from exc
    return ray


def ray_cpus(address: str | None) -> int:
    ray = ensure_ray(address)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_ray(
    fn: Callable[[Any], Any],
    chunks: list[Chunk],
    total: int,
    workers: int,
    progress: Progress | None,
    address: str | None,
) -> list[Outcome]:
    """Run chunks as Ray tasks, keeping at most ``workers`` in flight so max_workers is honoured."""
    ray = ensure_ray(address)
    remote_chunk = ray.remote(num_cpus=1, max_retries=1)(_run_pickled_chunk)
    fn_ref = ray.put(_dump_fn(fn, local_modules_by_value=True))
    results: list[Outcome | None] = [None] * total
    queue = list(reversed(chunks))
    in_flight: dict[Any, Chunk] = {}
    done_items = 0
    while queue or in_flight:
        while queue and len(in_flight) < workers:
            start, chunk = queue.pop()
            in_flight[remote_chunk.remote(fn_ref, start, chunk)] = (start, chunk)
        finished, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in finished:
            start, chunk = in_flight.pop(ref)
            try:
                outcomes = ray.get(ref)
            except Exception as exc:  # RayTaskError for a dead worker, OOM kill, lost node ...
                outcomes = _lost(
                    start, chunk, exc, "Ray task (every Ray worker needs loopml and the packages fn uses)"
                )
            done_items += _place(results, start, outcomes)
            if progress is not None:
                progress(done_items, total)
    return results  # type: ignore[return-value]
