"""Declaring pipelines: ``@step`` functions, ``Pipeline`` objects and the module-level registry.

The DAG is read from function signatures, so there is nothing to keep in sync by hand: a step
parameter named like another step of the pipeline receives that step's output, a parameter named
like a pipeline param receives the param's value, and a parameter with a default that matches
neither keeps its default. Anything else is a definition error raised when the pipeline is built,
not half-way through a nightly run.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from loopml.errors import ConflictError, NotFoundError, ValidationError, did_you_mean

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$")
#: Step parameters the runner fills itself: the Loopml client of the run's context, and the run id
#: (so a step can ingest, track and register through the same backends as the pipeline).
INJECTED = ("lm", "pipeline_run_id")


@dataclass(frozen=True)
class Step:
    """A plain function plus how to run it; call it like the function (``step(x)``) in unit tests."""

    fn: Callable[..., Any]
    name: str
    retries: int = 0
    backoff_seconds: float = 1.0
    cache: bool = True
    #: Parameter names in signature order, and the ones that have defaults.
    inputs: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Hash of the function's source (decorators, comments and formatting excluded).
    code_hash: str = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def input_types(self) -> dict[str, type]:
        """Annotated parameter types that can be checked with isinstance (generics are not checked)."""
        return {
            k: v
            for k, v in _type_hints(self.fn).items()
            if k in self.inputs and isinstance(v, type) and v is not Any  # Any is a class since 3.11
        }

    def output_type(self) -> type | None:
        hint = _type_hints(self.fn).get("return")
        return hint if isinstance(hint, type) and hint not in (type(None), Any) else None


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *, name: str | None = None, retries: int = 0, backoff_seconds: float = 1.0, cache: bool = True
) -> Callable[[Callable[..., Any]], Step]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff_seconds: float = 1.0,
    cache: bool = True,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Turn a function into a pipeline step (``@step`` or ``@step(retries=2, cache=False)``).

    ``retries`` extra attempts are made after a failure, waiting ``backoff_seconds * 2**n``.
    ``cache=False`` is for steps that read the outside world (a database, an API, "the latest
    file"), whose output can change while their inputs do not.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ValidationError(f"@step(retries={retries!r}): use an int between 0 and 100")
    if (
        isinstance(backoff_seconds, bool)
        or not isinstance(backoff_seconds, int | float)
        or backoff_seconds < 0
    ):
        raise ValidationError(f"@step(backoff_seconds={backoff_seconds!r}): use a number >= 0")
    if not isinstance(cache, bool):
        raise ValidationError(f"@step(cache={cache!r}): use True or False")

    def wrap(func: Callable[..., Any]) -> Step:
        if isinstance(func, Step):
            raise ValidationError(f"step {func.name!r} is decorated with @step twice; keep one decorator")
        if not callable(func) or not hasattr(func, "__code__"):
            raise ValidationError(f"@step must decorate a plain function, got {type(func).__name__}")
        step_name = name or func.__name__
        _check_name("step", step_name)
        sig = inspect.signature(func)
        for param in sig.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise ValidationError(
                    f"step {step_name!r}: parameter {param.name!r} is {param.kind.description}; steps take "
                    "named parameters only (their names select upstream steps and pipeline params)"
                )
        defaults = {p.name: p.default for p in sig.parameters.values() if p.default is not p.empty}
        return Step(
            fn=func,
            name=step_name,
            retries=retries,
            backoff_seconds=float(backoff_seconds),
            cache=cache,
            inputs=tuple(sig.parameters),
            defaults=defaults,
            code_hash=code_hash(func),
        )

    return wrap(fn) if fn is not None else wrap


def code_hash(fn: Callable[..., Any]) -> str:
    """sha256 of the function's normalised source, so editing a step invalidates its cache.

    The source is parsed and unparsed without decorators: changing ``retries`` or a comment does
    not change what the step computes, so it must not throw away cached outputs. Functions without
    source (built in a REPL) fall back to their bytecode and constants.
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
        node.decorator_list = []
        node.name = "_"  # the step name is part of the cache key already
        if (
            node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
            and isinstance(node.body[0].value.value, str)
            and len(node.body) > 1
        ):
            node.body = node.body[1:]  # the docstring does not change behaviour either
        text = ast.unparse(node)
    except (OSError, TypeError, SyntaxError, StopIteration):
        code = fn.__code__
        text = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.sha256(text.encode()).hexdigest()


class Pipeline:
    """A named DAG of steps with default params and an optional cron schedule (UTC).

    ``steps`` is a list of ``Step`` or a zero-argument builder returning one; the order given does
    not matter, execution follows the dependencies (ties keep the given order).
    """

    def __init__(
        self,
        name: str,
        steps: Iterable[Step] | Callable[[], Iterable[Step]],
        *,
        schedule: str | None = None,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        _check_name("pipeline", name)
        if callable(steps) and not isinstance(steps, Step):
            steps = steps()
        if isinstance(steps, Step):
            steps = [steps]
        try:
            step_list = list(steps)
        except TypeError:
            raise ValidationError(
                f"pipeline {name!r}: steps must be a list of @step functions, got {type(steps).__name__}"
            ) from None
        if not step_list:
            raise ValidationError(f"pipeline {name!r} has no steps; pass steps=[...] of @step functions")
        for item in step_list:
            if not isinstance(item, Step):
                raise ValidationError(
                    f"pipeline {name!r}: {getattr(item, '__name__', item)!r} is not a step; decorate it with @step"
                )
        params = dict(params or {})
        for key in params:
            _check_name("param", key)
        if schedule is not None:
            schedule = validate_cron(schedule, f"pipeline {name!r} schedule")
        self.name = name
        self.schedule = schedule
        self.params: dict[str, Any] = params
        self.description = description
        self.module: str | None = None
        self.steps: tuple[Step, ...] = tuple(_topological(name, step_list, params))
        self.upstream: dict[str, tuple[str, ...]] = {
            s.name: tuple(p for p in s.inputs if p in self.step_names) for s in self.steps
        }

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in getattr(self, "steps", ()))

    def step(self, name: str) -> Step:
        for item in self.steps:
            if item.name == name:
                return item
        raise NotFoundError(
            f"pipeline {self.name!r} has no step {name!r}." + did_you_mean(name, self.step_names)
        )

    def params_used(self, item: Step, params: Mapping[str, Any]) -> dict[str, Any]:
        """The pipeline params a step reads (only these enter its cache key)."""
        return {p: params[p] for p in item.inputs if p not in self.step_names and p in params}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.step_names)!r}, schedule={self.schedule!r})"


def validate_cron(expr: str, what: str = "schedule") -> str:
    """Check a 5-field cron expression (``"0 6 * * 2"``), raising a ValidationError that shows why."""
    from croniter import croniter

    if not isinstance(expr, str) or not croniter.is_valid(expr) or len(expr.split()) != 5:
        raise ValidationError(
            f"{what}={expr!r} is not a cron expression; use 5 fields 'minute hour day month weekday', "
            "e.g. '0 6 * * 2' (Tuesdays 06:00 UTC)"
        )
    return " ".join(expr.split())


def _topological(pipeline: str, steps: list[Step], params: Mapping[str, Any]) -> list[Step]:
    by_name: dict[str, Step] = {}
    for item in steps:
        if item.name in by_name:
            raise ValidationError(
                f"pipeline {pipeline!r} has two steps named {item.name!r}; give one @step(name=...)"
            )
        by_name[item.name] = item
    for key in params:
        if key in INJECTED:
            raise ValidationError(
                f"pipeline {pipeline!r}: param {key!r} is reserved (the runner passes it to steps); rename it"
            )
        if key in by_name:
            raise ValidationError(
                f"pipeline {pipeline!r}: param {key!r} has the name of a step; rename the param or the step"
            )
    deps: dict[str, list[str]] = {}
    for item in steps:
        deps[item.name] = []
        for param in item.inputs:
            if param == item.name:
                raise ValidationError(
                    f"step {item.name!r} takes its own output {param!r} as input; rename one"
                )
            if param in by_name:
                deps[item.name].append(param)
            elif param in INJECTED:
                continue
            elif param not in params and param not in item.defaults:
                raise ValidationError(
                    f"pipeline {pipeline!r}, step {item.name!r}: parameter {param!r} is neither a step "
                    f"(steps: {', '.join(by_name)}) nor a pipeline param (params: {', '.join(params) or 'none'}); "
                    f"add it to params={{...}}, give it a default, or rename it after the step it needs"
                )
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ValidationError(
                f"pipeline {pipeline!r} has a cycle: {cycle}; a step cannot depend on itself"
            )
        state[name] = 1
        for dep in deps[name]:
            visit(dep, [*path, name])
        state[name] = 2

    for item in steps:
        visit(item.name, [])  # raises on a cycle
    # Kahn's algorithm, always taking the earliest-listed ready step: a stable, predictable order.
    done: set[str] = set()
    ordered: list[Step] = []
    remaining = list(steps)
    while remaining:
        ready = next(s for s in remaining if all(d in done for d in deps[s.name]))
        ordered.append(ready)
        done.add(ready.name)
        remaining.remove(ready)
    return ordered


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"{kind} name {name!r} is not valid; use letters, digits, '_', '-' or '.', starting with a letter"
        )


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references simply go unchecked
        return {}


# -- registry ---------------------------------------------------------------------------------
_registry: dict[str, Pipeline] = {}
_registry_lock = threading.Lock()


def register(pipe: Pipeline, *, module: str | None = None) -> Pipeline:
    """Add a pipeline to the process-wide registry that ``Pipelines`` and workers look names up in.

    Re-registering a name from the same module replaces it (a module re-imported or edited in a
    notebook); the same name from another module is a ConflictError, since runs would otherwise
    silently execute whichever module was imported last.
    """
    if not isinstance(pipe, Pipeline):
        raise ValidationError(f"register() takes a Pipeline, got {type(pipe).__name__}")
    pipe.module = module or pipe.module
    with _registry_lock:
        existing = _registry.get(pipe.name)
        if existing is not None and existing is not pipe and existing.module != pipe.module:
            raise ConflictError(
                f"pipeline {pipe.name!r} is defined in {existing.module} and again in {pipe.module}; "
                "pipeline names must be unique, rename one"
            )
        _registry[pipe.name] = pipe
    return pipe


def unregister(name: str) -> None:
    with _registry_lock:
        _registry.pop(name, None)


def registered() -> dict[str, Pipeline]:
    with _registry_lock:
        return dict(_registry)


def pipeline(
    name: str,
    *,
    schedule: str | None = None,
    params: Mapping[str, Any] | None = None,
    description: str = "",
) -> Callable[[Callable[[], Iterable[Step]]], Pipeline]:
    """Declare and register a pipeline from a builder function that returns its steps.

    ``@pipeline("demand", schedule="0 6 * * 2", params={"weeks": 8})`` over ``def demand(): return [a, b]``.
    The builder's docstring becomes the description.
    """

    def wrap(builder: Callable[[], Iterable[Step]]) -> Pipeline:
        if not callable(builder):
            raise ValidationError(f"@pipeline({name!r}) must decorate a function returning the steps")
        pipe = Pipeline(
            name,
            builder,
            schedule=schedule,
            params=params,
            description=description or inspect.getdoc(builder) or "",
        )
        return register(pipe, module=getattr(builder, "__module__", None))

    return wrap
