"""``loopml demo fraud``: run the release story with a progress bar and print the tables behind it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.story import FraudStoryResult, run_fraud_story
from loopml.cli.common import console, progress_bar, table


def tell(lm: Any, fast: bool) -> FraudStoryResult:
    """Run the story (small with ``fast``) and print the latency and comparison tables."""
    cfg = FraudConfig.small() if fast else FraudConfig()
    with progress_bar(label="  replaying traffic: {task.description}", spinner=False, transient=True) as bar:
        task = bar.add_task("setup", total=cfg.phase_requests * 5)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=min(done, total), total=total)

        result = run_fraud_story(lm, cfg, say=lambda line: bar.console.print(f"  {line}"), progress=progress)
    _print(result)
    return result


def _print(result: FraudStoryResult) -> None:
    versions = [
        [
            f"fraud/{v.version}",
            f"day {v.day}",
            f"{v.train_rows:,}",
            str(v.train_positives),
            _f(v.holdout.auc),
            _p(v.holdout.precision_at_k),
            _p(v.holdout.recall),
        ]
        for v in result.versions.values()
    ]
    console.print(
        table(
            "offline: each version on the later week it never saw",
            ["version", "trained", "rows", "chargebacks", "AUC", "precision@k", "recall@thr"],
            versions,
        )
    )
    if result.latency is not None and len(result.latency):
        lat = [
            [
                str(r.phase),
                str(r.arm),
                "-" if pd.isna(r.version) else f"fraud/{int(r.version)}",
                f"{int(r.requests):,}",
                _f(r.p50_ms, 2),
                _f(r.p95_ms, 2),
                _f(r.p99_ms, 2),
            ]
            for r in result.latency.itertuples()
        ]
        console.print(
            table(
                "latency per phase and arm (server side, ms)",
                ["phase", "arm", "model", "n", "p50", "p95", "p99"],
                lat,
            )
        )
    if result.comparison is not None and len(result.comparison):
        comp = [
            [
                f"fraud/{int(r.version)}",
                f"{int(r.requests):,}",
                f"{int(r.labelled):,}",
                str(int(r.chargebacks)),
                _f(r.auc),
                _p(r.precision_at_k),
                _p(r.precision),
                _p(r.recall),
            ]
            for r in result.comparison.itertuples()
        ]
        console.print(
            table(
                "online: per version, from the inference log joined with chargebacks",
                [
                    "version",
                    "answered",
                    "labelled",
                    "chargebacks",
                    "AUC",
                    "precision@k",
                    "precision",
                    "recall",
                ],
                comp,
            )
        )
    verdict = "[green]promoted[/]" if result.promoted else "[red]not promoted[/]"
    broken = "[green]rolled back[/]" if result.broken_rolled_back else "[red]NOT rolled back[/]"
    console.print(
        f"  v2 {verdict}; champion is fraud/{result.champion}; broken fraud/{result.broken_version} {broken} "
        f"({result.broken_canary_errors} canary failures answered by the baseline); "
        f"failed requests: [bold]{result.failed_requests}[/] of {result.total_requests:,}; "
        f"story took {result.seconds:.1f} s"
    )


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _p(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.1%}"
