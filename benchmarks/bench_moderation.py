"""Moderation load: real screening throughput, a simulated week with 2x peak for 2 hours, and a real
time-compressed replay of that peak. Answers the seeds' question: does the screener keep >= 90 % of
uploads under 1 hour of queueing at 2x peak, on CPU, within 1.5 M KRW a month?

Run: ``loopml bench moderation`` or ``.venv/bin/python benchmarks/bench_moderation.py [--quick]``

Three parts, and what is real in each:

1. MEASURE (real): simulated uploads (package images composited with held-out lfw faces; a mix of
   sizes from ~400 px to 12 MP phone photos) go through ``upload()`` into the real queue; 1 and then
   2 ``loopml.worker.Worker`` processes run the real ``moderation.screen`` handler (endpoint runtime,
   Haar v1 model, decision + notification transaction) on the embedded default (SQLite), then 1
   process with v2 (HOG, trained here on 300 rows of the starting data). Gives
   images/s (wall, under whatever else runs on the host) and images per CPU-second of the worker
   processes (what a dedicated core does), plus the per-job service-time distribution.
2. REPLAY (simulated): a discrete-event simulation of a week from ``traffic.WeekTraffic`` (hourly and
   weekday pattern, TV spike, 2x peak for 2 hours) with the ``capacity.Autoscaler`` and service times
   drawn from part 1's measured distribution (1 worker process). The simulated week takes seconds.
   Run at the default volume and at a 10x stress volume.
3. REAL COMPRESSED REPLAY: the 2x-peak segment through the real queue and worker processes, time
   compressed by ``--compress`` (the 2 hours take 7200/C seconds) with the volume scaled down by the
   same factor, so uploads arrive at the true peak rate. Real waits are multiplied by C to read them
   in simulated time: exact when a backlog grows (the growth per second is the same), an upper bound
   when the queue is stable (a job's own duration is not compressed). The SLO check runs every second
   with its thresholds divided by C.

Writes docs/benchmarks/moderation.md.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 170)
SLO = 3600.0
MAX_SHARE = 0.10
#: Upload mix: kinds of photo and the long side they are re-encoded at (None = as simulated, ~300-640 px).
KINDS = (("animal", 0.6), ("face", 0.2), ("small_face", 0.2))
SIDES = ((None, 0.4), (1280, 0.4), (3024, 0.2))
TICKS = os.sysconf("SC_CLK_TCK")


# -- images ---------------------------------------------------------------------------------------
def make_uploads(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` simulated uploads with distinct seeds. A few still come out near-identical to a rejected one
    and are caught as re-uploads at upload time, as in production; they queue no job."""
    from PIL import Image

    from loopml.apps.moderation.data import simulated_upload

    rng = np.random.default_rng(seed)
    kinds = rng.choice([k for k, _ in KINDS], size=n, p=[p for _, p in KINDS])
    sides = rng.choice(len(SIDES), size=n, p=[p for _, p in SIDES])
    out = []
    for i in range(n):
        data = simulated_upload(seed * 100_000 + i, str(kinds[i]))
        side = SIDES[int(sides[i])][0]
        if side is not None:
            img = Image.open(io.BytesIO(data)).convert("RGB")
            scale = side / max(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=88)
            data = buf.getvalue()
        out.append((str(kinds[i]), data))
    return out


# -- worker processes -------------------------------------------------------------------------------
def _worker(home: str, stop: Any) -> None:
    from loopml.config import load_settings
    from loopml.context import Context
    from loopml.worker import Worker, load_handler_modules

    ctx = Context.from_settings(load_settings(home=home))
    load_handler_modules(ctx)
    worker = Worker(
        ctx, queues=("moderation",), concurrency=1, poll_min=0.01, poll_max=0.1, lease_seconds=120
    )
    local = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), local.set()), daemon=True).start()
    worker.run(local)
    from loopml.apps.moderation.screening import close_screeners

    close_screeners()
    ctx.close()


class Pool:
    """``n`` worker processes on the moderation queue; CPU time read from /proc."""

    def __init__(self, home: str, n: int) -> None:
        spawn = mp.get_context("spawn")
        self.stop = spawn.Event()
        self.procs = [spawn.Process(target=_worker, args=(home, self.stop), daemon=True) for _ in range(n)]
        for p in self.procs:
            p.start()

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        return total

    def close(self) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(60)
            if p.is_alive():
                p.kill()


# -- a loopml home ------------------------------------------------------------------------------------
def train_v2(path: str, seed: int) -> Any:
    """v2 (HOG + linear model) trained on 300 rows of the offline starting data (~25 s)."""
    from loopml.apps.moderation.data import boxes_of, build_starting_data
    from loopml.apps.moderation.models import train_hog_classifier

    df = build_starting_data(path, n=300, seed=seed)
    return train_hog_classifier(
        df["path"].tolist(), df["label"].astype(int).tolist(), boxes_of(df), seed=seed
    )


def open_home(path: str, model: Any = None) -> Any:
    """A fresh home with ``model`` (default: Haar v1) as the champion behind the moderation endpoint."""
    from loopml import Loopml
    from loopml.apps.moderation.config import ModerationConfig, save_config
    from loopml.apps.moderation.models import HaarFaceDetector, example_input
    from loopml.apps.moderation.screening import ensure_endpoint
    from loopml.config import load_settings

    lm = Loopml(load_settings(home=path))
    lm.ctx.db.upgrade()
    cfg = ModerationConfig()
    save_config(lm, cfg)
    version = lm.registry.register(
        cfg.model_name,
        model or HaarFaceDetector(),
        flavor="python",
        input_example=example_input(),
        actor="bench",
    )
    lm.registry.set_alias(cfg.model_name, "champion", version.number, actor="bench", reason="benchmark")
    ensure_endpoint(lm, cfg)
    return lm


def submit(lm: Any, item: tuple[str, bytes], i: int) -> int:
    """Upload one photo; returns the jobs it queued (0 when caught as a re-upload of a rejected photo)."""
    from loopml.apps.moderation.uploads import SCREENING, upload

    kind, data = item
    req = upload(lm, data, title=f"bench {kind} {i}", tags=[kind.replace("_", "-")], uploader=f"u{i % 50}")
    return int(req.status == SCREENING)


def wait_done(lm: Any, count: int, timeout: float, on_tick: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = lm.jobs.stats(queue="moderation")
        if stats["succeeded"] + stats["dead"] >= count:
            return
        if on_tick:
            on_tick()
        time.sleep(0.25)
    raise TimeoutError(f"the workers did not finish {count} jobs within {timeout:.0f} s")


def job_rows(lm: Any) -> list[Any]:
    rows = lm.jobs.list(queue="moderation", limit=100_000)
    return sorted(rows, key=lambda j: j.id)


@dataclass
class Measure:
    model: str
    workers: int
    jobs: int
    wall_seconds: float
    cpu_seconds: float
    durations: list[float]
    upload_ms: list[float]
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.jobs / self.wall_seconds

    @property
    def per_core_wall(self) -> float:
        return self.rate / self.workers

    @property
    def per_cpu_second(self) -> float:
        return self.jobs / self.cpu_seconds if self.cpu_seconds else float("nan")


def measure(
    home: str,
    workers: int,
    uploads: list[tuple[str, bytes]],
    warm: int,
    model: Any = None,
    name: str = "v1 Haar",
) -> Measure:
    """Upload ``warm + n`` photos, then let ``workers`` processes drain them; the first ``warm`` jobs
    load the models and are not counted."""
    lm = open_home(home, model)
    upload_ms, jobs = [], 0
    for i, item in enumerate(uploads):
        t = time.perf_counter()
        jobs += submit(lm, item, i)
        upload_ms.append((time.perf_counter() - t) * 1000)
    pool = Pool(home, workers)
    try:
        wait_done(lm, warm, 300)
        cpu0 = pool.cpu_seconds()
        wait_done(lm, jobs, 600)
        cpu1 = pool.cpu_seconds()
    finally:
        pool.close()
    rows = [j for j in job_rows(lm)[warm:] if j.started_at and j.finished_at]
    wall = (max(j.finished_at for j in rows) - min(j.started_at for j in rows)).total_seconds()
    durations = [(j.finished_at - j.started_at).total_seconds() for j in rows]
    outcomes = lm.async_requests.counts("moderation")
    lm.close()
    return Measure(name, workers, len(rows), wall, cpu1 - cpu0, durations, upload_ms, outcomes)


# -- part 3: real compressed replay of the 2x peak ------------------------------------------------------
@dataclass
class RealReplay:
    compress: float
    rate: float
    uploads: int
    workers: int
    real_seconds: float
    waits: list[float]
    offsets: list[float]
    severities: list[str]
    behind_seconds: float

    @property
    def slope(self) -> float:
        """Seconds of extra wait per second of run (least squares; 0 when the queue does not grow)."""
        if len(self.waits) < 3:
            return 0.0
        return max(0.0, float(np.polyfit(self.offsets, self.waits, 1)[0]))

    @property
    def projected(self) -> np.ndarray:
        """Each job's wait projected to where it falls in the full 2 hours: its real wait plus the
        measured growth over the part of the segment the compressed run skipped."""
        off = np.asarray(self.offsets)
        return np.asarray(self.waits) + self.slope * off * (self.compress - 1.0)


def real_replay(
    home: str, uploads: list[tuple[str, bytes]], rate: float, compress: float, workers: int, seed: int
) -> RealReplay:
    from loopml.apps.moderation.slo import check_queue_age

    lm = open_home(home)
    warm = sum(submit(lm, item, i) for i, item in enumerate(uploads[: 2 * workers]))
    pool = Pool(home, workers)
    severities: list[str] = []
    try:
        wait_done(lm, warm, 300)
        duration = 7200.0 / compress
        rng = np.random.default_rng([seed, 5])
        gaps = rng.exponential(1.0 / rate, size=len(uploads))
        times = np.cumsum(gaps)
        times = times[times < duration]
        todo = uploads[2 * workers : 2 * workers + len(times)]
        times = times[: len(todo)]
        start = time.monotonic()
        last_check, behind, jobs = 0.0, 0.0, warm
        for i, (at, item) in enumerate(zip(times, todo, strict=True)):
            now = time.monotonic() - start
            if at > now:
                time.sleep(at - now)
            behind = max(behind, time.monotonic() - start - at)
            jobs += submit(lm, item, 2 * workers + i)
            if time.monotonic() - last_check >= 1.0:
                last_check = time.monotonic()
                severities.append(check_queue_age(lm).severity or "ok")

        def tick() -> None:
            severities.append(check_queue_age(lm).severity or "ok")

        wait_done(lm, jobs, 600, on_tick=tick)
        real_seconds = time.monotonic() - start
    finally:
        pool.close()
    rows = [j for j in job_rows(lm)[warm:] if j.started_at]
    waits = [(j.started_at - j.created_at).total_seconds() for j in rows]
    first = min(j.created_at for j in rows)
    offsets = [(j.created_at - first).total_seconds() for j in rows]
    lm.close()
    return RealReplay(compress, rate, len(rows), workers, real_seconds, waits, offsets, severities, behind)


# -- report ------------------------------------------------------------------------------------------
def pct(values: Any, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def load_avg() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=int, default=60, help="measured uploads per worker process (default 60)"
    )
    parser.add_argument(
        "--weekly", type=int, default=150_000, help="uploads per simulated week (default 150,000)"
    )
    parser.add_argument(
        "--stress", type=float, default=10.0, help="volume multiple of the stress week (default 10)"
    )
    parser.add_argument(
        "--compress", type=float, default=60.0, help="time compression of the real replay (default 60)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (~2 min)")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.compress = 12, 240.0

    from loopml.apps.moderation.capacity import HOURS_PER_MONTH, Autoscaler, replay
    from loopml.apps.moderation.traffic import WeekTraffic, describe

    started = time.perf_counter()
    traffic = WeekTraffic(weekly_uploads=args.weekly, seed=args.seed)
    summary = traffic.summary()
    peak_rate = summary["peak_segment_per_s"]
    n_replay = int(summary["peak_segment_uploads"] / args.compress * 1.3) + 8
    runs = (("v1 Haar", 1), ("v1 Haar", 2), ("v2 HOG", 1))
    counts = {(name, w): w * (args.jobs + 3) for name, w in runs}
    loads: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory(prefix="loopml-bench-moderation-") as tmp,
        Progress(console=console) as bar,
    ):
        task = bar.add_task("simulated uploads", total=sum(counts.values()) + n_replay)
        images: list[tuple[str, bytes]] = []
        for chunk in range(0, sum(counts.values()) + n_replay, 20):
            size = min(20, sum(counts.values()) + n_replay - chunk)
            images += make_uploads(size, args.seed * 1000 + chunk // 20 + 1)
            bar.advance(task, size)
        m: dict[tuple[str, int], Measure] = {}
        offset, v2 = 0, None
        for name, w in runs:
            if name.startswith("v2") and v2 is None:
                bar.update(task, description="training v2 (HOG) on the starting data")
                v2 = train_v2(f"{tmp}/starting", args.seed)
            bar.update(task, description=f"measuring {name}, {w} worker process(es)")
            key = (name, w)
            loads[key] = load_avg()
            model = v2 if name.startswith("v2") else None
            home = f"{tmp}/measure-{len(m)}"
            m[key] = measure(home, w, images[offset : offset + counts[key]], 3 * w, model, name)
            offset += counts[key]
            loads[key] += f" -> {load_avg()}"

        # part 2 ---------------------------------------------------------------------------------
        bar.update(task, description="simulated week")
        base = m[("v1 Haar", 1)]
        mu = base.rate  # one worker's measured throughput, claim and commit overhead included
        service = np.asarray(base.durations) * ((1.0 / mu) / float(np.mean(base.durations)))
        sims = {}
        dedicated = base.per_cpu_second if np.isfinite(base.per_cpu_second) else mu
        hog = m[("v2 HOG", 1)]
        hog_service = np.asarray(hog.durations) * ((1.0 / hog.rate) / float(np.mean(hog.durations)))
        for label, week, rate, times in (
            ("default, v1", traffic, mu, service),
            ("default, v1, dedicated core", traffic, dedicated, service * (mu / dedicated)),
            ("default, v2", traffic, hog.rate, hog_service),
            (f"{args.stress:g}x stress, v1", traffic.scaled(args.stress), mu, service),
        ):
            scaler = Autoscaler(images_per_second_per_worker=rate)
            sims[label] = (week, scaler, replay(week.arrivals(), times, scaler, seed=args.seed))

        # part 3 ---------------------------------------------------------------------------------
        need = Autoscaler(images_per_second_per_worker=mu).needed(0, peak_rate)
        real_workers = min(max(need, 1), os.cpu_count() or 1)
        bar.update(task, description=f"real replay of the 2x peak (x{args.compress:g} compressed)")
        loads["real replay"] = load_avg()
        rr = real_replay(f"{tmp}/replay", images[offset:], peak_rate, args.compress, real_workers, args.seed)
        loads["real replay"] += f" -> {load_avg()}"
    seconds = time.perf_counter() - started
    report(args, traffic, summary, m, sims, rr, need, loads, seconds, describe, HOURS_PER_MONTH)


def report(args, traffic, summary, m, sims, rr, need, loads, seconds, describe, hours_per_month) -> None:
    budget = 1_500_000.0
    ok = lambda good: "[green]pass[/]" if good else "[red]FAIL[/]"  # noqa: E731
    plain = lambda good: "pass" if good else "FAIL"  # noqa: E731

    t1 = Table(title="1. measured: real uploads -> queue -> worker processes -> model -> decision")
    cols = ["model", "worker processes", "jobs", "images/s", "images/s per process", "images per CPU-second",
            "job p50 / p95 / p99 ms", "upload() p50 / p99 ms", "load avg (start -> end)"]  # fmt: skip
    for c in cols:
        t1.add_column(c, justify="right")
    rows1 = []
    for key, r in m.items():
        row = [r.model, str(r.workers), str(r.jobs), f"{r.rate:.2f}", f"{r.per_core_wall:.2f}", f"{r.per_cpu_second:.2f}",
               f"{pct(r.durations, 50) * 1000:.0f} / {pct(r.durations, 95) * 1000:.0f} / {pct(r.durations, 99) * 1000:.0f}",
               f"{pct(r.upload_ms, 50):.0f} / {pct(r.upload_ms, 99):.0f}", loads[key]]  # fmt: skip
        t1.add_row(*row)
        rows1.append(row)
    console.print(t1)

    t2 = Table(title="2. simulated week (discrete events, measured service times, autoscaler)")
    cols2 = ["week", "uploads", "waited > 1 h (all)", "waited > 1 h (2x peak)", "max wait", "p99 wait",
             "max workers", "worker-h / week", "CPU cost / month", "vs 1.5 M KRW"]  # fmt: skip
    for c in cols2:
        t2.add_column(c, justify="right")
    rows2, verdicts = [], []
    p0, p1 = traffic.peak.seconds
    for label, (_week, scaler, sim) in sims.items():
        share_all = sim.share_over(SLO)
        share_peak = sim.share_over(SLO, p0, p1)
        cost = scaler.monthly_cost(sim.worker_hours)
        good = share_all < MAX_SHARE and share_peak < MAX_SHARE and cost <= budget
        verdicts.append(good)
        row = [label, f"{len(sim.arrivals):,}", f"{share_all:.2%}", f"{share_peak:.2%}",
               f"{max(sim.waits):.0f} s", f"{pct(sim.waits, 99):.1f} s", str(sim.max_workers()),
               f"{sim.worker_hours:.0f}", f"{cost:,.0f} KRW", f"{cost / budget:.1%}"]  # fmt: skip
        t2.add_row(*row[:-1], f"{row[-1]} {ok(good)}")
        rows2.append([*row[:-1], f"{row[-1]} {plain(good)}"])
    console.print(t2)
    _week, scaler, stress = sims[list(sims)[-1]]
    per_upload = scaler.monthly_cost(stress.worker_hours) / (len(stress.arrivals) * hours_per_month / 168.0)
    extra = (budget - scaler.cost(scaler.min_workers * hours_per_month)) / per_upload
    budget_weekly = extra * 168.0 / hours_per_month

    from loopml.apps.moderation.slo import severity_for

    sw = rr.projected
    share_real = float((sw > SLO).mean()) if len(sw) else 0.0
    seen = max(rr.severities, key=["ok", "warning", "critical"].index) if rr.severities else "ok"
    projected_alert = severity_for(float(max(sw, default=0.0))) or "none"
    real_good = share_real < MAX_SHARE
    t3 = Table(
        title=f"3. real replay of the 2x peak at its true rate, {7200 / rr.compress:.0f} s of the 2 h (x{rr.compress:g})"
    )
    cols3 = ["uploads", "arrival rate", "worker processes", "real run", "wait p50 / p99 / max (real)",
             "wait growth", "max wait projected to 2 h", "waited > 1 h (projected)", "queue-age alert (seen / projected)",
             "load avg"]  # fmt: skip
    for c in cols3:
        t3.add_column(c, justify="right")
    row3 = [str(rr.uploads), f"{rr.rate:.2f}/s", f"{rr.workers}" + (f" (autoscaler: {need})" if need != rr.workers else ""),
            f"{rr.real_seconds:.0f} s", f"{pct(rr.waits, 50):.2f} / {pct(rr.waits, 99):.2f} / {max(rr.waits, default=0):.2f} s",
            f"{rr.slope * 3600:.0f} s per h", f"{max(sw, default=0) / 60:.1f} min", f"{share_real:.1%}",
            f"{seen} / {projected_alert}", loads["real replay"]]  # fmt: skip
    t3.add_row(*row3[:-3], f"{row3[-3]} {ok(real_good)}", *row3[-2:])
    console.print(t3)
    console.print(
        f"budget: {per_upload:.4f} KRW of worker CPU per upload; 1.5 M KRW pays for ~{budget_weekly:,.0f} uploads/week "
        f"(linear from the stress week). Whole run {seconds:.0f} s."
    )

    m1 = m[("v1 Haar", 1)]
    machine = (
        f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"embedded default (SQLite). The host is shared: load average at the end {load_avg()} on {os.cpu_count()} cores, "
        "so wall-clock rates are lower than a dedicated core's; images per CPU-second is the load-independent figure"
    )
    md = [
        "## Moderation load (`benchmarks/bench_moderation.py`)",
        "",
        "Does the face screener keep >= 90 % of uploads under 1 hour of queueing at 2x peak for 2 hours, on CPU, "
        "within 1.5 M KRW a month? (issue 6, seeds 7.3). Three parts; what is real is said in each."
        + (" **Quick run (--quick): small sizes.**" if args.quick else ""),
        "",
        f"Machine: {machine}.",
        "",
        "**1. Measured (real).** Simulated uploads (package photos with held-out lfw faces pasted in; 60 % animals, "
        "20 % faces, 20 % small faces; 40 % at ~300-640 px, 40 % re-encoded at 1280 px, 20 % at 3024 px = 12 MP "
        f"phone photos) through `upload()` into the queue, then drained by 1 and 2 `loopml worker` processes "
        "(concurrency 1 each) running the real `moderation.screen` handler: endpoint runtime, the champion model, "
        "decision and notification in one transaction. v1 is the Haar cascade (the system starts with it); v2 the "
        f"HOG classifier, trained in the run on 300 rows of the starting data. {args.jobs} measured jobs per process after a warm-up. Job times are "
        "claim to ack.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *["| " + " | ".join(r) + " |" for r in rows1],
        "",
        f"**2. Simulated week (discrete-event).** `traffic.WeekTraffic`: {summary['weekly_uploads']:,.0f} uploads/week "
        f"(mean {summary['mean_per_s']:.2f}/s, normal peak {summary['normal_peak_per_s']:.2f}/s), TV spike "
        f"{describe(traffic.spike)} at 3x ({summary['spike_per_s']:.2f}/s), 2x peak {describe(traffic.peak)} "
        f"({summary['peak_segment_per_s']:.2f}/s, {summary['peak_segment_uploads']:,.0f} uploads). Service times drawn "
        f"from part 1 (1 process, v1 unless the row says v2) scaled to its measured wall-clock throughput on this loaded host ({m1.rate:.2f} "
        f"images/s, claim overhead included); the `dedicated core` row scales them to the CPU-time rate instead "
        f"({m1.per_cpu_second:.2f} images per CPU-second), what a worker with a core of its own does. "
        "`capacity.Autoscaler` every simulated minute: Little's law on the last 5 minutes' arrival rate and the "
        "queue depth (utilisation 80 %, drain within 15 min), min 1 / max 16 workers, scale down after 10 quiet "
        "minutes, a new worker serves after 90 s. Cost: 70 KRW per vCPU-hour (AWS c6i.large Seoul on-demand "
        "≈ USD 0.096/h for 2 vCPU at ≈ 1,400 KRW/USD), one vCPU per worker, 730 h a month.",
        "",
        "| " + " | ".join(cols2) + " |",
        "|" + "---|" * len(cols2),
        *["| " + " | ".join(r) + " |" for r in rows2],
        "",
        f"Worker CPU per upload: {per_upload:.4f} KRW; the 1.5 M KRW budget pays for ~{budget_weekly:,.0f} uploads a "
        "week (linear from the stress week). The budget is not what limits this screener; the API server and "
        "database are not in these figures.",
        "",
        f"**3. Real compressed replay of the 2x peak.** The 2 simulated hours in {7200 / rr.compress:.0f} real "
        f"seconds (x{rr.compress:g}), the volume divided by the same factor so uploads arrive at the true peak rate "
        f"({rr.rate:.2f}/s, Poisson) through `upload()`, real queue, {rr.workers} real worker process(es) (the autoscaler "
        f"asks for {need}; this machine has {os.cpu_count()} cores). A wait is a job's created-to-claimed time. "
        "The run covers only the first part of the 2 hours, so each wait is projected to its place in the full "
        "segment with the measured growth (least-squares slope of wait over arrival time, floored at 0): a stable "
        "queue keeps its real waits, a growing backlog grows on for the full 2 hours. The queue-age check "
        f"(`moderation.slo`, real thresholds) ran every second against the live queue (seen: {seen}); the projected "
        f"column applies its 30/45-minute thresholds to the projected maximum. "
        f"The uploader fell behind its schedule by at most {rr.behind_seconds:.1f} s.",
        "",
        "| " + " | ".join(cols3) + " |",
        "|" + "---|" * len(cols3),
        "| " + " | ".join([*row3[:-3], f"{row3[-3]} {plain(real_good)}", *row3[-2:]]) + " |",
        "",
        f"Whole run {seconds:.0f} s.",
        "",
    ]
    out = ROOT / "docs" / "benchmarks" / "moderation.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    console.print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
