"""Signature-checked predict vs the alternatives, on the online hot path (one row) and a batch.

Compares, in one process on the same LightGBM model:
- raw: ``booster.predict`` on an already-built float matrix (no checks at all; the floor),
- loopml: ``LoadedModel.predict(row_dict)`` (signature check + ordering + predict),
- pandas+pandera: build a one-row DataFrame, validate it with a pandera schema, predict
  (what a team would otherwise write).
The figure that matters is the *overhead* above raw: the brief for serving is < 100 us per call.

Run: .venv/bin/python benchmarks/bench_registry.py
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from loopml import Loopml, load_settings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks" / "registry.md"
N_FEATURES = 12
REPEAT = 3000


def _time(fn, repeat: int = REPEAT) -> tuple[float, float]:
    """Median and p99 in microseconds per call (after a warm-up)."""
    for _ in range(200):
        fn()
    samples = np.empty(repeat)
    clock = time.perf_counter_ns
    for i in range(repeat):
        start = clock()
        fn()
        samples[i] = clock() - start
    return float(np.median(samples) / 1e3), float(np.percentile(samples, 99) / 1e3)


def main() -> None:
    import pandera.pandas as pa

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(N_FEATURES)]
    X = pd.DataFrame(rng.normal(size=(2000, N_FEATURES)), columns=names)
    y = X.f0 * 2 - X.f1 + rng.normal(scale=0.1, size=len(X))
    model = lgb.LGBMRegressor(n_estimators=100, verbose=-1, n_jobs=1).fit(X, y)
    row = {n: float(X.iloc[0][n]) for n in names}
    batch = X.head(1000)

    with tempfile.TemporaryDirectory() as home:
        lm = Loopml(load_settings(home=Path(home)))
        lm.registry.register("bench", model, input_example=X.head(50))
        loaded = lm.registry.load("bench/1")
        booster = loaded.predictor.booster
        matrix = np.array([[row[n] for n in names]])
        schema = pa.DataFrameSchema({n: pa.Column(float, nullable=False) for n in names}, strict=True)

        def pandera_row() -> np.ndarray:
            frame = schema.validate(pd.DataFrame([row]))
            return booster.predict(frame[names].to_numpy(), num_threads=1)

        results = {
            "one row": {
                "raw booster.predict (no checks)": _time(lambda: booster.predict(matrix, num_threads=1)),
                "loopml LoadedModel.predict(dict)": _time(lambda: loaded.predict(row)),
                "pandas DataFrame + pandera + predict": _time(pandera_row, repeat=REPEAT // 3),
            },
            "1000 rows": {
                "raw booster.predict (no checks)": _time(
                    lambda: booster.predict(batch.to_numpy(), num_threads=1), 100
                ),
                "loopml LoadedModel.predict(DataFrame)": _time(lambda: loaded.predict(batch), 100),
                "pandas DataFrame + pandera + predict": _time(
                    lambda: booster.predict(schema.validate(batch).to_numpy(), num_threads=1), 100
                ),
            },
        }
        lm.close()

    console = Console()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "## Registry: signature-checked predict (`benchmarks/bench_registry.py`)",
        "",
        f"Machine: {machine}. LightGBM regressor, 100 trees, {N_FEATURES} float features. Median and p99 of "
        f"{REPEAT} calls (one row) / 100 calls (1000 rows). *Overhead* = time above the unchecked booster call.",
        "",
        "| input | path | median us | p99 us | overhead us | x raw |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, rows in results.items():
        table = Table(title=f"predict, {case}")
        for col in ("path", "median us", "p99 us", "overhead us", "x raw"):
            table.add_column(col, justify="right" if col != "path" else "left")
        raw = next(iter(rows.values()))[0]
        for path, (median, p99) in rows.items():
            cells = [path, f"{median:.1f}", f"{p99:.1f}", f"{median - raw:.1f}", f"{median / raw:.2f}"]
            table.add_row(*cells)
            lines.append(f"| {case} | {' | '.join(cells)} |")
        console.print(table)
    one = results["one row"]
    ours = one["loopml LoadedModel.predict(dict)"][0] - one["raw booster.predict (no checks)"][0]
    theirs = one["pandas DataFrame + pandera + predict"][0] - one["raw booster.predict (no checks)"][0]
    summary = (
        f"One-row check overhead: loopml {ours:.1f} us vs pandas+pandera {theirs:.1f} us "
        f"({theirs / max(ours, 0.1):.0f}x less)."
    )
    console.print(summary)
    lines += ["", summary, ""]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    console.print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
