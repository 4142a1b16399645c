"""Load generators for benchmarks/bench_serving.py: ``wrk`` when installed, else an asyncio raw-socket client.

Both are closed-loop: ``connections`` keep-alive HTTP/1.1 connections, each sending the next POST as
soon as the previous answer arrived, for a bounded time after a warm-up whose numbers are discarded.
Latency is measured per request by the generator (client side, loopback included).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LUA = Path(__file__).resolve().parent / "serving_post.lua"


@dataclass
class LoadResult:
    """One measured load run against one target."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts
    tool: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    connections: int,
    duration: float,
    warmup: float,
    tool: str = "auto",
    threads: int = 2,
) -> LoadResult:
    """Warm up for ``warmup`` seconds (discarded), then measure ``duration`` seconds."""
    if tool == "auto":
        tool = "wrk" if have_wrk() else "python"
    if tool == "wrk":
        if warmup > 0:
            _wrk(host, port, path, bodies, connections, warmup, threads)
        return _wrk(host, port, path, bodies, connections, duration, threads)
    if tool != "python":
        raise ValueError(f"tool={tool!r}: use 'auto', 'wrk' or 'python'")
    return asyncio.run(_python_load(host, port, path, bodies, connections, duration, warmup))


# -- wrk ---------------------------------------------------------------------------------------
_LINE = re.compile(r"^SBENCH (.*)$", re.MULTILINE)


def _wrk(
    host: str, port: int, path: str, bodies: list[bytes], connections: int, seconds: float, threads: int
) -> LoadResult:
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as fh:
        fh.write(b"\n".join(bodies) + b"\n")
        body_file = fh.name
    try:
        env = {**os.environ, "SBENCH_BODIES": body_file, "SBENCH_PATH": path}
        cmd = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(LUA),
            f"http://{host}:{port}{path}",
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        os.unlink(body_file)
    match = _LINE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    fields = dict(kv.split("=", 1) for kv in match.group(1).split())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "timeout"))
    errors += int(non_2xx.group(1)) if non_2xx else int(fields["status"])
    return LoadResult(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        p50_ms=int(fields["p50"]) / 1000.0,
        p95_ms=int(fields["p95"]) / 1000.0,
        p99_ms=int(fields["p99"]) / 1000.0,
        max_ms=int(fields["max"]) / 1000.0,
        errors=errors,
        tool=f"wrk -t{min(threads, connections)} -c{connections}",
    )


# -- asyncio fallback ------------------------------------------------------------------------------
async def _python_load(
    host: str, port: int, path: str, bodies: list[bytes], connections: int, duration: float, warmup: float
) -> LoadResult:
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    async def connection(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        k = i * 7919
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                writer.write(requests[k % len(requests)])
                k += 1
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies[i].append(t1 - t0)
                    if not 200 <= status < 300:
                        errors[i] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    measured = time.perf_counter() - measure_from
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000.0
    p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if len(lat) else (0.0, 0.0, 0.0)
    return LoadResult(
        requests=len(lat),
        seconds=measured,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(lat.max()) if len(lat) else 0.0,
        errors=sum(errors),
        tool=f"python asyncio, {connections} connections",
    )
