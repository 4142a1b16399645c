"""``loopml demo loop``: run the closed-loop story with a progress bar and print its timelines and figures."""

from __future__ import annotations

from typing import Any

from loopml.apps.fraud.loop_story import LoopStoryResult, run_loop_story
from loopml.cli.common import console, progress_bar, table

MARK = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "waiting": "[yellow]waiting[/]"}


def tell_loop(lm: Any, fast: bool) -> LoopStoryResult:
    """Run the story (small with ``fast``) and print the windows, both loop runs and the AUC table."""
    with progress_bar(label="  replaying traffic: {task.description}", spinner=False, transient=True) as bar:
        task = bar.add_task("setup", total=1)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=min(done, total), total=total)

        result = run_loop_story(
            lm, fast=fast, say=lambda line: bar.console.print(f"  {line}"), progress=progress
        )
    _print(result)
    return result


def _print(r: LoopStoryResult) -> None:
    console.print(
        table(
            "monitor fraud-live: daily windows (drift vs the reference, performance on chargebacks)",
            [
                "window",
                "requests",
                "labelled",
                "share drifted",
                "drifted",
                "mcc JS",
                "score W1",
                "AUC",
                "recall",
            ],
            [
                [
                    w["window_start"][:10],
                    f"{w['rows']:,}",
                    f"{w['labelled']:,}",
                    _f(w["share_drifted"], 2),
                    ", ".join(w["drifted"]) or "-",
                    _f(w["mcc"]),
                    _f(w["prediction"]),
                    _f(w["auc"]),
                    _p(w["recall"]),
                ]
                for w in r.windows
            ],
        )
    )
    for run in r.runs:
        rows = [
            [
                str(item["at"])[5:16].replace("T", " "),
                item["step"],
                MARK.get(item["status"], item["status"]),
                str(item["detail"])[:150],
            ]
            for item in run.timeline
        ]
        console.print(
            table(
                f"loop run {run.run_id}: {run.trigger} -> {run.status} ({run.baseline} -> {run.candidate})",
                ["at", "step", "status", "detail"],
                rows,
            )
        )
        if run.retrain:
            t = run.retrain
            console.print(
                f"  retrain: {t.get('train_rows', 0):,} rows ({t.get('train_positives')} chargebacks), eval set "
                f"fraud_loop_eval v{t.get('eval_dataset_version')} ({t.get('eval_rows')} rows), eval AUC "
                f"{_f(t.get('eval_auc'))}, amounts from the {t.get('amount_source')}; candidate served "
                f"{run.requests_during:,} requests, {run.failed_during} failed"
            )
    if r.auc:
        console.print(
            table(
                "every version on the same post-shift traffic with real features (chargebacks from the simulation)",
                ["model", "transactions", "chargebacks", "AUC", "recall@0.3", "gift-card drip caught"],
                [
                    [
                        a["model"],
                        f"{a['rows']:,}",
                        str(a["chargebacks"]),
                        _f(a["auc"]),
                        _p(a["recall"]),
                        _p(a["drip_caught"]),
                    ]
                    for a in r.auc
                ],
            )
        )
    console.print(
        table(
            "alert messages the Slack webhook received",
            ["topic", "text"],
            [[m["topic"] or "-", slack_text(m["body"])[:110].replace("\n", " ")] for m in r.webhook],
        )
    )
    verdict = {run.run_id: run.status for run in r.runs}
    slo = r.slo or {}
    console.print(
        f"  loop runs: {verdict}; champion is {r.champion}; SLO latency p99 {_f(slo.get('value'), 2)} ms "
        f"(ok={slo.get('ok')}); requests {r.total_requests:,}, failed [bold]{r.failed_requests}[/], "
        f"fallbacks {r.fallback_requests}; {r.ticks} ticks; story took {r.seconds:.1f} s"
    )


def slack_text(body: Any) -> str:
    """A Slack message's text for people: Slack's mrkdwn escapes ``&``, ``<`` and ``>`` as entities
    (``&amp;`` last, so an escaped ``&lt;`` in the original stays ``&lt;``)."""
    text = str((body or {}).get("text", "")) if isinstance(body, dict) else ""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _p(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"
