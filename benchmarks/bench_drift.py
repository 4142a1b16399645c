"""Drift: loopml's compute_drift against Evidently's DataDriftPreset on the same data, one run.

Run: ``python benchmarks/bench_drift.py [--rows 1000000 --numeric 40 --categorical 10]`` with an
interpreter that has Evidently (``evidently==0.7.23`` needs ``pandas<3``); without it only loopml
is measured and the section says so.

Data: ``--rows`` reference and ``--rows`` current rows, seeded; ``--numeric`` float features (every
fourth one shifted in the current window, 1 % missing values in a few) and ``--categorical``
string features with 5 to 50 categories (every third one with reweighted categories). Every
contender runs in its own spawned process that builds the same frames from the same seed (a
checksum proves it), so its peak RSS and its RSS growth during the call are its own; data
generation is not timed. Contenders:

- loopml ``compute_drift(reference_frame, current_frame)``: profiles the reference, then tests;
  serially and with the thread fan-out.
- loopml with a prebuilt ``ReferenceProfile`` (what a monitor does every window): the window cost.
- Evidently ``Report([DataDriftPreset()]).run(current, reference)`` with the column types given.

Per-feature statistics of both tools are printed side by side (Evidently reports p-values for
KS / chi-square and distances otherwise) with their largest absolute difference. Aim: >= 10x faster.
Writes docs/benchmarks/drift.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402  (a sibling module: scripts run from benchmarks/)

console = Console(width=170)
# Evidently ships anonymous usage telemetry; a benchmark must not phone home.
os.environ.setdefault("DO_NOT_TRACK", "1")
SEED = 7
AIM = 10.0


# -- data ------------------------------------------------------------------------------------------
def make_frames(rows: int, n_numeric: int, n_categorical: int) -> tuple[Any, Any]:
    """Reference and current frames; the same arguments always give the same frames."""
    import pandas as pd

    rng = np.random.default_rng(SEED)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    for i in range(n_numeric):
        kind = i % 3
        shift = 0.25 if i % 4 == 0 else 0.0
        if kind == 0:
            ref[f"num_{i}"] = rng.normal(0.0, 1.0, rows)
            cur[f"num_{i}"] = rng.normal(shift, 1.0, rows)
        elif kind == 1:
            ref[f"num_{i}"] = rng.lognormal(0.0, 0.7, rows)
            cur[f"num_{i}"] = rng.lognormal(shift, 0.7, rows)
        else:  # rounded: many ties
            ref[f"num_{i}"] = np.round(rng.gamma(2.0, 10.0, rows))
            cur[f"num_{i}"] = np.round(rng.gamma(2.0, 10.0 * (1 + shift), rows))
        if i % 10 == 5:
            for side in (ref, cur):
                side[f"num_{i}"][rng.random(rows) < 0.01] = np.nan
    for j in range(n_categorical):
        k = 5 + (j * 5) % 46
        labels = np.array([f"c{j}_{v}" for v in range(k)], dtype=object)
        p = rng.dirichlet(np.ones(k) * 2)
        q = rng.dirichlet(np.ones(k) * 2) if j % 3 == 0 else p
        ref[f"cat_{j}"] = labels[rng.choice(k, rows, p=p)]
        cur[f"cat_{j}"] = labels[rng.choice(k, rows, p=q)]
    return pd.DataFrame(ref), pd.DataFrame(cur)


def checksum(frame: Any) -> float:
    num = frame.select_dtypes("number")
    return float(np.nansum(num.to_numpy())) + float(
        sum(frame[c].str.len().sum() for c in frame.columns if c not in num)
    )


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- contenders (each in a spawned process) ------------------------------------------------------------
def run_loopml(args: dict[str, Any], mode: str, out: Any) -> None:
    try:
        from loopml.monitoring.drift import ReferenceProfile, compute_drift

        ref, cur = make_frames(args["rows"], args["numeric"], args["categorical"])
        base = _rss_mb()
        build = 0.0
        executor = "serial" if mode == "serial" else "thread"
        if mode == "profile":
            t0 = time.perf_counter()
            reference: Any = ReferenceProfile.from_frame(ref)
            build = time.perf_counter() - t0
            del ref
            base = _rss_mb()
        else:
            reference = ref
        t0, c0 = time.perf_counter(), time.process_time()
        report = compute_drift(reference, cur, executor=None if mode == "profile" else executor)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        data = report.to_dict()
        stats = {
            name: (f["test"], f["p_value"] if f["p_value"] is not None else f["statistic"], f["drifted"])
            for name, f in data["features"].items()
        }
        out.put(
            {
                "seconds": seconds,
                "cpu": cpu,
                "build": build,
                "peak_mb": _peak_mb(),
                "delta_mb": _peak_mb() - base,
                "stats": stats,
                "dataset_drifted": data["dataset_drifted"],
                "checksum": checksum(cur),
            }
        )
    except Exception as exc:  # report, never hang the parent
        out.put({"error": f"{type(exc).__name__}: {exc}"})


EVIDENTLY_TESTS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chi2",
    "PSI": "psi",
}


def run_evidently(args: dict[str, Any], out: Any) -> None:
    try:
        import warnings

        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        warnings.filterwarnings("ignore")
        ref, cur = make_frames(args["rows"], args["numeric"], args["categorical"])
        definition = DataDefinition(
            numerical_columns=[c for c in ref.columns if c.startswith("num_")],
            categorical_columns=[c for c in ref.columns if c.startswith("cat_")],
        )
        base = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = {}
        share = None
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if config.get("type", "").endswith("ValueDrift"):
                test = EVIDENTLY_TESTS.get(config["method"], config["method"])
                score = float(metric["value"])
                threshold = float(config["threshold"])
                drifted = (
                    score <= threshold
                    if test == "ks"
                    else (score < threshold if test == "chi2" else score >= threshold)
                )
                stats[config["column"]] = (test, score, drifted)
            elif config.get("type", "").endswith("DriftedColumnsCount"):
                share = float(metric["value"]["share"])
        import evidently

        out.put(
            {
                "seconds": seconds,
                "cpu": cpu,
                "peak_mb": _peak_mb(),
                "delta_mb": _peak_mb() - base,
                "stats": stats,
                "dataset_drifted": share is not None and share >= 0.5,
                "checksum": checksum(cur),
                "version": evidently.__version__,
            }
        )
    except Exception as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def _spawn(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def evidently_available() -> str | None:
    try:
        import importlib.metadata as md

        return md.version("evidently")
    except Exception:
        return None


# -- report ----------------------------------------------------------------------------------------
def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[list[list[str]], float, int]:
    rows = []
    worst = 0.0
    disagreements = 0
    for name, (test, value, drifted) in ours.items():
        other = theirs.get(name)
        if other is None:
            rows.append([name, test, f"{value:.6g}", "-", "-", "-", "missing"])
            continue
        diff = abs(value - other[1])
        worst = max(worst, diff)
        same_test = test == other[0]
        disagreements += drifted != other[2] or not same_test
        rows.append(
            [
                name,
                test if same_test else f"{test} / {other[0]}",
                f"{value:.10g}",
                f"{other[1]:.10g}",
                f"{diff:.1e}",
                "yes" if drifted else "no",
                "yes" if other[2] else "no",
            ]
        )
    return rows, worst, disagreements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the reference and in the current frame"
    )
    parser.add_argument("--numeric", type=int, default=40)
    parser.add_argument("--categorical", type=int, default=10)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--no-doc", action="store_true", help="print only; do not write docs/benchmarks/drift.md"
    )
    args = parser.parse_args()
    size = {"rows": args.rows, "numeric": args.numeric, "categorical": args.categorical}
    version = None if args.skip_evidently else evidently_available()

    plan: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("loopml compute_drift (frames, threads)", run_loopml, (size, "thread")),
        ("loopml compute_drift (frames, serial)", run_loopml, (size, "serial")),
        ("loopml compute_drift (ReferenceProfile)", run_loopml, (size, "profile")),
    ]
    if version:
        plan.append((f"Evidently {version} DataDriftPreset", run_evidently, (size,)))
    results: dict[str, dict[str, Any]] = {}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        for label, target, extra in plan:
            task = bar.add_task(label, total=1)
            results[label] = _spawn(target, *extra)
            bar.update(task, completed=1)
    for label, res in results.items():
        if "error" in res:
            console.print(f"[red]{label} failed: {res['error']}[/]")
    ok = {k: v for k, v in results.items() if "error" not in v}
    evidently_label = next((k for k in ok if k.startswith("Evidently")), None)
    base = ok.get(evidently_label) if evidently_label else None
    sums = {round(v["checksum"], 3) for v in ok.values()}

    table_rows = []
    for label, res in ok.items():
        speed = f"{base['seconds'] / res['seconds']:.1f}x" if base else "-"
        cpu_speed = f"{base['cpu'] / res['cpu']:.1f}x" if base else "-"
        memory = (
            f"{res['delta_mb'] / base['delta_mb']:.2f}x"
            if base and base["delta_mb"] > 0 and res["delta_mb"] > 0
            else "-"
        )
        extra = f" (+ {res['build']:.1f} s to build the profile once)" if res.get("build") else ""
        table_rows.append(
            [
                label + extra,
                f"{res['seconds']:.2f}",
                f"{res['cpu']:.2f}",
                f"{res['peak_mb']:.0f}",
                f"{res['delta_mb']:.0f}",
                speed,
                cpu_speed,
                memory,
            ]
        )
    t = Table(title=f"drift, {args.rows:,} + {args.rows:,} rows x {args.numeric + args.categorical} features")
    for col in (
        "contender",
        "wall s",
        "CPU s",
        "peak RSS MB",
        "RSS growth MB",
        "wall vs Evidently",
        "CPU vs Evidently",
        "memory vs Evidently",
    ):
        t.add_column(col)
    for row in table_rows:
        t.add_row(*row)
    console.print(t)

    stat_rows: list[list[str]] = []
    worst = float("nan")
    disagreements = 0
    first = ok.get(plan[0][0])
    if base and first:
        stat_rows, worst, disagreements = compare(first["stats"], base["stats"])
        s = Table(title="per-feature statistics (p-value for ks/chi2, else the distance)")
        for col in ("feature", "test", "loopml", "Evidently", "abs diff", "drift loopml", "drift Evidently"):
            s.add_column(col)
        for row in stat_rows:
            s.add_row(*row)
        console.print(s)
        console.print(
            f"largest absolute difference: {worst:.2e}; drift verdicts that differ: {disagreements}"
        )
    if args.no_doc:
        return
    write_doc(args, version, table_rows, stat_rows, worst, disagreements, len(sums) == 1, base, first)


def write_doc(
    args: Any,
    version: str | None,
    table_rows: list[list[str]],
    stat_rows: list[list[str]],
    worst: float,
    disagreements: int,
    same_data: bool,
    base: dict[str, Any] | None,
    first: dict[str, Any] | None,
) -> None:
    import numpy
    import pandas
    import scipy

    features = args.numeric + args.categorical
    aim = ""
    if base and first:
        ratio = base["seconds"] / first["seconds"]
        aim = f"Aim >= {AIM:.0f}x faster: **{'met' if ratio >= AIM else 'MISSED'}** ({ratio:.1f}x). "
    lines = [
        "## Drift (`benchmarks/bench_drift.py`)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}"
        + (f", evidently {version}" if version else "")
        + ".",
        "",
        f"{args.rows:,} reference rows and {args.rows:,} current rows x {features} features ({args.numeric} float "
        f"with every fourth shifted and 1 % missing in some, {args.categorical} string categoricals with 5-50 "
        "categories, every third reweighted). Each contender runs in its own spawned process that builds the same "
        f"frames from one seed (checksums {'equal' if same_data else 'DIFFER'}); seconds are the drift call only (wall, and CPU time of all the process's threads, which is less "
        "disturbed by other load on the machine), "
        "'RSS growth' is peak RSS during the call minus RSS before it (the frames are already in memory). "
        "Default tests on both sides (Evidently's DataDriftPreset rules; at this size normed Wasserstein for numeric "
        "and Jensen-Shannon for categorical columns). " + aim,
        "",
        "| contender | wall s | CPU s | peak RSS MB | RSS growth MB | faster (wall) | faster (CPU) | memory vs Evidently |",
        "|---|---|---|---|---|---|---|---|",
        *["| " + " | ".join(row) + " |" for row in table_rows],
        "",
    ]
    if not version:
        lines += [
            "Evidently is not installed in this interpreter, so it was not measured. Run with an environment that "
            "has `evidently==0.7.23` and `pandas<3` to compare.",
            "",
        ]
    if stat_rows:
        lines += [
            f"Per-feature statistics, loopml (threads) against Evidently: largest absolute difference "
            f"**{worst:.1e}**, drift verdicts that differ: **{disagreements}**.",
            "",
            "<details><summary>all features</summary>",
            "",
            "| feature | test | loopml | Evidently | abs diff | drift (loopml) | drift (Evidently) |",
            "|---|---|---|---|---|---|---|",
            *["| " + " | ".join(row) + " |" for row in stat_rows],
            "",
            "</details>",
            "",
        ]
    text = "\n".join(lines)
    out = ROOT / "docs" / "benchmarks" / "drift.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    console.print(text)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
