"""Serving benchmark: single-row predictions from loopml's endpoint vs ``mlflow models serve`` vs a minimal
FastAPI handler, on the same LightGBM model, in one run.

Run with the benchmark venv (it has the ``mlflow`` extra):

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -e . mlflow
    apt-get install -y wrk   # optional: without it an asyncio raw-socket generator is used
    .venv-bench/bin/python benchmarks/bench_serving.py [--duration 20] [--warmup 3] [--connections 8]

One binary LightGBM booster (200 trees, 20 features), three servers on their own 127.0.0.1 ports,
each with 2 worker processes, started as subprocesses and stopped at the end:
- loopml: ``loopml serve --workers 2`` (uvicorn, httptools + uvloop) on a fresh home holding the model
  (alias ``champion``) and the endpoint ``bench`` (policy single), inference logging and metrics on;
- MLflow: ``mlflow models serve -m <dir> --env-manager local -w 2`` of the booster saved with
  ``mlflow.lightgbm.save_model``;
- minimal: ``benchmarks/serving_minimal_app.py`` under the same uvicorn (2 workers, httptools + uvloop),
  ``Booster.predict`` on a numpy row and nothing else: the practical limit.
Every server first has to give the same probabilities as the booster in-process for a few rows; then
each gets a bounded closed-loop load (warm-up, then ``--duration`` seconds, ``--connections`` keep-alive
connections). All servers run with ``OMP_NUM_THREADS=1`` (loopml and the minimal app already predict on
one thread; MLflow calls ``Booster.predict`` with LightGBM's default and would otherwise start an
OpenMP team per request on a machine whose cores the load generator needs). Writes
docs/benchmarks/serving.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name
from serving_load import LoadResult, have_wrk, run_load

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
N_FEATURES = 20
N_TREES = 200
N_BODIES = 256  # distinct request rows, cycled by the load generator
CHECK_ROWS = 5  # rows whose probabilities every server must reproduce
TOLERANCE = 1e-9
MODEL_NAME = "bench_lgbm"
ENDPOINT = "bench"
AIM_VS_MLFLOW = 10.0
AIM_P99_MS = 10.0
AIM_VS_MINIMAL = 0.70
console = Console(width=150)


@dataclass
class Target:
    """One server under test: how to start it, what to send it, how to read its answer."""

    name: str
    label: str
    command: list[str]
    env: dict[str, str]
    path: str
    bodies: list[bytes]
    probability: Callable[[Any], float]
    cwd: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    result: LoadResult | None = None
    max_diff: float = 0.0  # largest |server - Booster.predict| over the checked rows


# -- the model ---------------------------------------------------------------------------------
def train(seed: int = 0) -> tuple[Any, list[str], np.ndarray]:
    """A 200-tree binary booster on 20 features, and rows it has not seen (rounded so JSON is exact)."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    X = rng.normal(size=(5_000, N_FEATURES))
    w = rng.normal(size=N_FEATURES)
    logit = X @ w / 3 + 0.8 * X[:, 0] * X[:, 1] - 0.5 * np.abs(X[:, 2])
    y = (rng.random(5_000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "learning_rate": 0.05,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 2,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=names), num_boost_round=N_TREES)
    rows = np.round(rng.normal(size=(N_BODIES, N_FEATURES)), 6)
    return booster, names, rows


# -- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` from PATH
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def loopml_target(tmp: Path, booster: Any, names: list[str], rows: np.ndarray) -> Target:
    """A fresh home with the model registered and the endpoint created, served by ``loopml serve``."""
    import pandas as pd

    import loopml
    from loopml.serving.endpoints import Endpoints, EndpointSpec, Fallback, Single

    home = tmp / "loopml-home"
    lm = loopml.connect(home=home)
    try:
        lm.ctx.db.upgrade()
        example = pd.DataFrame(rows[:5], columns=names)
        version = lm.registry.register(MODEL_NAME, booster, input_example=example, actor="bench")
        lm.registry.set_alias(MODEL_NAME, "champion", version.number, actor="bench", reason="benchmark")
        endpoints = lm.endpoints if hasattr(type(lm), "endpoints") else Endpoints(lm.ctx)
        # The default timeout (100 ms) stays; a fallback answers a timeout instead of a 503, and the
        # log's non-ok rows (reported below) say how often that happened.
        fallback = Fallback({"label": None, "probability": None}, status="fallback")
        endpoints.create(
            EndpointSpec(ENDPOINT, Single(f"{MODEL_NAME}@champion"), fallback=fallback), actor="bench"
        )
    finally:
        lm.close()
    port = free_port()
    env = {**base_env(), "LOOPML_HOME": str(home)}
    command = [
        str(BIN / "loopml"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    bodies = [orjson.dumps({"row": dict(zip(names, row.tolist(), strict=True))}) for row in rows]
    return Target(
        "loopml",
        "loopml endpoint (logging + metrics on)",
        command,
        env,
        f"/v1/endpoints/{ENDPOINT}/predict",
        bodies,
        lambda body: float(body["outputs"][0]["probability"]),
        cwd=tmp,
        port=port,
    )


def mlflow_target(tmp: Path, booster: Any, names: list[str], rows: np.ndarray) -> Target:
    import mlflow.lightgbm

    model_dir = tmp / "mlflow-model"
    mlflow.lightgbm.save_model(booster, str(model_dir))
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-w",
        "2",
        "-h",
        HOST,
        "-p",
        str(port),
    ]
    bodies = [orjson.dumps({"dataframe_split": {"columns": names, "data": [row.tolist()]}}) for row in rows]

    def probability(body: Any) -> float:
        pred = body["predictions"][0]
        return float(pred[0] if isinstance(pred, list) else pred)

    return Target(
        "mlflow",
        f"mlflow models serve ({mlflow.__version__})",
        command,
        base_env(),
        "/invocations",
        bodies,
        probability,
        cwd=tmp,
        port=port,
    )


def minimal_target(tmp: Path, booster: Any, names: list[str], rows: np.ndarray) -> Target:
    model_file = tmp / "booster.txt"
    booster.save_model(str(model_file))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "serving_minimal_app:app",
        "--app-dir",
        str(Path(__file__).resolve().parent),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
    ]
    bodies = [orjson.dumps({"row": dict(zip(names, row.tolist(), strict=True))}) for row in rows]
    return Target(
        "minimal",
        "minimal FastAPI + Booster.predict",
        command,
        {**base_env(), "SBENCH_MODEL_FILE": str(model_file)},
        "/predict",
        bodies,
        lambda body: float(body["probability"]),
        cwd=tmp,
        port=port,
    )


def post(target: Target, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, target.port, timeout=timeout)
    try:
        conn.request("POST", target.path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start(target: Target, logs: Path) -> None:
    target.log = logs / f"{target.name}.log"
    with target.log.open("wb") as out:
        target.proc = subprocess.Popen(
            target.command,
            env=target.env,
            cwd=target.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its workers at the end
        )


def wait_ready(target: Target, timeout: float = 120.0) -> None:
    """Until a real predict answers 200 (the first one also loads loopml's endpoint runtime)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert target.proc is not None
        if target.proc.poll() is not None:
            raise SystemExit(f"{target.name} server exited ({target.proc.returncode}):\n{tail(target)}")
        try:
            status, body = post(target, target.bodies[0], timeout=5.0)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise SystemExit(f"{target.name} server not ready after {timeout:.0f} s ({last}):\n{tail(target)}")


def stop(target: Target, grace: float = 20.0) -> None:
    proc = target.proc
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this script created for the server
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def tail(target: Target, lines: int = 30) -> str:
    if target.log is None or not target.log.exists():
        return ""
    return "\n".join(target.log.read_text(errors="replace").splitlines()[-lines:])


def check_answers(target: Target, booster: Any, rows: np.ndarray) -> float:
    """Largest |server - in-process| probability over CHECK_ROWS rows; SystemExit past TOLERANCE."""
    expected = booster.predict(rows[:CHECK_ROWS], num_threads=1)
    worst = 0.0
    for i in range(CHECK_ROWS):
        status, body = post(target, target.bodies[i])
        if status != 200:
            raise SystemExit(f"{target.name}: row {i} answered HTTP {status}: {body[:300]!r}")
        got = target.probability(json.loads(body))
        worst = max(worst, abs(got - float(expected[i])))
    if worst > TOLERANCE:
        raise SystemExit(f"{target.name}: probabilities differ from Booster.predict by {worst:.3g}")
    return worst


def scrape(target: Target) -> tuple[float, dict[str, float]]:
    """(predictions counted, errors by kind) in the worker that answers this ``/metrics`` scrape."""
    conn = http.client.HTTPConnection(HOST, target.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    predictions, errors = 0.0, {}
    for line in text.splitlines():
        if line.startswith("loopml_endpoint_predictions_total"):
            predictions += float(line.rsplit(" ", 1)[1])
        elif line.startswith("loopml_endpoint_errors_total") and 'kind="' in line:
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            errors[kind] = errors.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
    return predictions, errors


def logged(home: Path) -> tuple[int, int]:
    """(rows, error rows) in loopml's inference log for the endpoint, after the server flushed on shutdown."""
    import loopml
    from loopml.serving.inference import InferenceLog

    lm = loopml.connect(home=home)
    try:
        log = lm.inference if hasattr(type(lm), "inference") else InferenceLog(lm.ctx)
        stats = log.window_stats(ENDPOINT, since=datetime(2000, 1, 1, tzinfo=UTC))
        return int(log.count(ENDPOINT)), sum(int(s.errors) for s in stats.values())
    finally:
        lm.close()


# -- report -----------------------------------------------------------------------------------
def machine() -> str:
    cpu = cpu_name()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}; load average at the end {load}"
    )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(targets: list[Target], args: argparse.Namespace, extra: list[str]) -> str:
    import fastapi
    import lightgbm
    import uvicorn

    by = {t.name: t for t in targets}
    lm_r = by["loopml"].result
    assert lm_r is not None
    tool = lm_r.tool
    table = Table(
        title=f"serving: single-row predict, {args.connections} connections, {args.duration:g} s each"
    )
    cols = ["server", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "loopml x"]
    for col in cols:
        table.add_column(col, justify="left" if col == "server" else "right")
    lines = [
        "## Serving: single-row predict vs MLflow and a minimal handler (`benchmarks/bench_serving.py`)",
        "",
        f"One binary LightGBM booster ({N_TREES} trees, {N_FEATURES} features, LightGBM {lightgbm.__version__}), "
        f"single-row JSON requests ({N_BODIES} distinct rows, cycled). Each server runs 2 worker processes on "
        f"its own 127.0.0.1 port; load: {tool}, closed loop, keep-alive, {args.warmup:g} s warm-up then "
        f"{args.duration:g} s per server, one server at a time. Latency is client-side. Every server first "
        f"reproduced the in-process `Booster.predict` probabilities of {CHECK_ROWS} rows "
        f"(max difference {max(t.max_diff for t in targets):.1g}).",
        "",
        "- **loopml**: `loopml serve --workers 2` (uvicorn, httptools + uvloop), endpoint `bench` "
        '(policy single, model `bench_lgbm@champion`), body `{"row": {...}}`; inference logging (background '
        "batch writer to SQLite) and Prometheus metrics on, the response carries request id, version and "
        "latency.",
        "- **MLflow**: `mlflow models serve --env-manager local -w 2` of the booster saved with "
        '`mlflow.lightgbm.save_model`, body `{"dataframe_split": ...}` (one row).',
        f"- **minimal**: FastAPI {fastapi.__version__} handler under the same uvicorn {uvicorn.__version__} "
        "(2 workers, httptools + uvloop): orjson body -> numpy row -> `Booster.predict(num_threads=1)`; "
        "no validation, logging or metrics. The practical limit.",
        "",
        f"Machine: {machine()}. The load generator shares these cores with the servers, so every figure is "
        "lower than on a dedicated client; the ratios are the point.",
        "",
        "| server | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | loopml req/s is |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        r = t.result
        assert r is not None
        ratio = "-" if t.name == "loopml" else f"{lm_r.rate / r.rate:.2f}x"
        cells = [
            t.label,
            f"{r.requests:,}",
            f"{r.rate:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.max_ms:.1f}",
            f"{r.errors}",
            ratio,
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    aims = []
    if "mlflow" in by and by["mlflow"].result is not None:
        x = lm_r.rate / by["mlflow"].result.rate
        aims.append(
            f"loopml / MLflow throughput **{x:.1f}x** (aim >= {AIM_VS_MLFLOW:g}x: {verdict(x >= AIM_VS_MLFLOW)})"
        )
    aims.append(
        f"loopml p99 **{lm_r.p99_ms:.2f} ms** (aim <= {AIM_P99_MS:g} ms: {verdict(lm_r.p99_ms <= AIM_P99_MS)})"
    )
    if "minimal" in by and by["minimal"].result is not None:
        share = lm_r.rate / by["minimal"].result.rate
        aims.append(
            f"loopml / minimal handler throughput **{share:.0%}** "
            f"(aim >= {AIM_VS_MINIMAL:.0%}: {verdict(share >= AIM_VS_MINIMAL)})"
        )
    if (
        "mlflow" in by
        and "minimal" in by
        and by["mlflow"].result is not None
        and by["minimal"].result is not None
    ):
        ceiling = by["minimal"].result.rate / by["mlflow"].result.rate
        aims.append(
            f"ceiling: the minimal handler itself is {ceiling:.1f}x MLflow here, which bounds loopml / MLflow "
            "(MLflow 3 serves with FastAPI + uvicorn too; its cost is the pandas/schema work per request)"
        )
    for aim in aims:
        console.print(f"- {aim}")
    lines += ["", *[f"- {a}" for a in aims], "", "\n\n".join(extra), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per server first")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--only", default="minimal,loopml,mlflow", help="comma-separated servers to run (loopml always runs)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "serving.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    args = parser.parse_args()
    wanted = {s.strip() for s in args.only.split(",") if s.strip()} | {"loopml"}
    if "mlflow" in wanted:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise SystemExit(
                "mlflow is not installed in this interpreter; run with the benchmark venv: "
                "python3 -m venv .venv-bench && .venv-bench/bin/pip install -e . mlflow "
                "(or pass --only minimal,loopml)"
            ) from None
    if args.load == "wrk" and not have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk), or use --load python")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-serving-"))
    logs = tmp / "logs"
    logs.mkdir()
    targets: list[Target] = []
    extra: list[str] = []
    try:
        console.print("training the booster ...")
        booster, names, rows = train()
        makers = {"minimal": minimal_target, "loopml": loopml_target, "mlflow": mlflow_target}
        for name, make in makers.items():
            if name in wanted:
                targets.append(make(tmp, booster, names, rows))
        for t in targets:
            console.print(f"starting [bold]{t.name}[/] on port {t.port}: {' '.join(t.command[:4])} ...")
            start(t, logs)
        for t in targets:
            wait_ready(t)
            worst = t.max_diff = check_answers(t, booster, rows)
            console.print(f"  {t.name} ready; max |p - Booster.predict| over {CHECK_ROWS} rows = {worst:.2g}")
        for t in targets:
            console.print(f"[bold]{t.name}[/]: {args.warmup:g} s warm-up + {args.duration:g} s load ...")
            t.result = run_load(
                HOST,
                t.port,
                t.path,
                t.bodies,
                connections=args.connections,
                duration=args.duration,
                warmup=args.warmup,
                tool=args.load,
            )
            r = t.result
            console.print(
                f"  {r.rate:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p95 {r.p95_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                f"errors {r.errors}"
            )
        lm_target = next(t for t in targets if t.name == "loopml")
        counted, error_kinds = scrape(lm_target)
        for t in targets:
            stop(t)
        rows_logged, error_rows = logged(tmp / "loopml-home")
        assert lm_target.result is not None
        extra.append(
            f"Proof that loopml's logging and metrics were on: the inference log holds **{rows_logged:,}** rows "
            f"for `bench` after shutdown (the measured {lm_target.result.requests:,} requests plus warm-up and "
            f"checks), and one worker's `/metrics` counted {counted:,.0f} predictions."
        )
        if error_rows or lm_target.result.errors:
            kinds = (
                ", ".join(f"{k} {v:,.0f}" for k, v in sorted(error_kinds.items())) or "none in that worker"
            )
            extra.append(
                f"loopml answered {lm_target.result.errors} measured requests with an HTTP error; the log "
                f"holds {error_rows} rows not answered by the model (fallback or error; kinds in one "
                f"worker's `/metrics`: {kinds}). A `timeout` is the endpoint's default `timeout_ms` of "
                "100 ms, hit when a pooled model call is not scheduled in time on a saturated host; the "
                "endpoint's fallback answers it (HTTP 200, `status: fallback`)."
            )
        else:
            extra.append("Every logged loopml answer came from the model (no fallback, no error rows).")
        console.print("\n".join(extra))
        if lm_target.result.requests > rows_logged:
            raise SystemExit(
                f"loopml logged {rows_logged} rows for {lm_target.result.requests} measured requests"
            )
        failed = [t.name for t in targets if t.result is not None and t.result.errors]
        if failed:
            extra.append(f"Servers with failed requests: {', '.join(failed)} (see the errors column).")
        text = report(targets, args, extra)
    except BaseException:
        for t in targets:
            if t.proc is not None and t.proc.poll() is not None and t.proc.returncode not in (0, -15):
                console.print(f"[red]{t.name} log:[/]\n{tail(t)}")
        raise
    finally:
        for t in targets:
            stop(t)
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
