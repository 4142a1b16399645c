"""``loopml moderation ...``: the operator's review queue, retraining, release and the capacity check.

- ``review list | approve ID | reject ID``: the queue, oldest first, and decisions (exactly once).
- ``retrain``: run ``moderation.retrain`` here (progress bar) and print the held-out comparison.
- ``release shadow | ab | report | promote | end``: move the screening endpoint through the release.
- ``capacity``: flagged uploads per week against what operators can review.
- ``status``: outcome counts, queue age, the endpoint's policy and the model aliases.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from loopml.cli.common import client, console, duration, progress_bar, table

moderation_app = typer.Typer(
    help="Photo moderation: review queue, retraining, release, capacity.", no_args_is_help=True
)
review_app = typer.Typer(help="The human review queue.", no_args_is_help=True)
release_app = typer.Typer(
    help="Shadow, online A/B and promotion of a retrained screener.", no_args_is_help=True
)
moderation_app.add_typer(review_app, name="review")
moderation_app.add_typer(release_app, name="release")


def register(app: typer.Typer) -> None:
    """Add the ``moderation`` group to the root app."""
    app.add_typer(moderation_app, name="moderation")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# -- review ------------------------------------------------------------------------------------------
@review_app.command("list")
def review_list(
    limit: int = typer.Option(50, min=1, max=1000, help="At most this many items (oldest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Uploads waiting for an operator, oldest first, with the screener's score and reason."""
    from loopml.apps.moderation import review

    with client() as lm:
        items = review.review_queue(lm, limit=limit)
        depth = review.queue_depth(lm)
    if as_json:
        console.print_json(json.dumps({"depth": depth, "items": [i.to_dict() for i in items]}))
        return
    rows = [
        [
            i.id,
            i.title,
            i.uploader,
            _num(i.face_score),
            f"{i.model or '-'}/{i.version or '-'}",
            duration(i.age_seconds),
            i.reason,
        ]
        for i in items
    ]
    console.print(
        table(
            f"review queue ({depth} waiting)",
            ["id", "title", "uploader", "score", "model", "waiting", "reason"],
            rows,
        )
    )


#: The arguments of ``review approve`` and ``review reject``: the same decision, either way.
_CONTENT_ID = typer.Argument(..., help="Content id (see `loopml moderation review list`).")
_NOTE = typer.Option("", help="Why (sent to the uploader, kept with the label).")
_REVIEWER = typer.Option("cli", help="Who decides (recorded as the reviewer).")


def _decide(content_id: str, approve: bool, note: str, actor: str) -> None:
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        done = review.decide(
            lm, content_id, approve=approve, actor=actor, note=note, endpoint=load_config(lm).endpoint
        )
    console.print(
        f"{done.id}: {done.status} by {done.reviewer} (label has_face={done.has_face}; "
        f"feedback {'sent' if done.feedback_sent else 'not sent'}, labels {'exported' if done.labels_exported else 'pending'})"
    )


@review_app.command("approve")
def review_approve(
    content_id: str = _CONTENT_ID,
    note: str = _NOTE,
    actor: str = _REVIEWER,
) -> None:
    """Publish an upload held for review (409 when someone decided already)."""
    _decide(content_id, True, note, actor)


@review_app.command("reject")
def review_reject(
    content_id: str = _CONTENT_ID,
    note: str = _NOTE,
    actor: str = _REVIEWER,
) -> None:
    """Reject an upload held for review (409 when someone decided already)."""
    _decide(content_id, False, note, actor)


# -- retrain -----------------------------------------------------------------------------------------
@moderation_app.command("retrain")
def retrain(
    n: int = typer.Option(600, min=60, max=100_000, help="Starting images (built once per size and seed)."),
    seed: int = typer.Option(0, min=0, help="Seed of the starting data and the validation fold."),
    as_of: str = typer.Option(
        "", help="Hold out the last complete week before this ISO date (default: today)."
    ),
    min_precision: float = typer.Option(
        0.98, min=0.5, max=1.0, help="Precision automatic rejections must keep."
    ),
    weekly_uploads: int = typer.Option(5000, min=1, help="Expected uploads per week (for flagged/week)."),
    face_share: float = typer.Option(
        0.05, min=0.0, max=1.0, help="Expected share of uploads showing a face."
    ),
    submit: bool = typer.Option(False, "--submit", help="Queue it for a worker instead of running it here."),
) -> None:
    """Run ``moderation.retrain``: labels -> split by week -> train v2 -> evaluate -> register -> gate."""
    from loopml.apps.moderation import pipeline as rp
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        params = rp.retrain_params(
            load_config(lm),
            n=n,
            seed=seed,
            as_of=as_of,
            min_precision=min_precision,
            weekly_uploads=weekly_uploads,
            face_share=face_share,
        )
        if submit:
            job = lm.pipelines.submit(rp.RETRAIN, params)
            console.print(f"queued {rp.RETRAIN} as job {job.id} (run {job.payload['run_id']})")
            return
        with progress_bar(transient=True) as bar:
            task = bar.add_task(rp.RETRAIN, total=len(rp.STEPS))
            done: set[str] = set()

            def on_step(state: Any) -> None:
                if state.status in ("succeeded", "skipped", "failed", "upstream_failed"):
                    done.add(state.step)
                bar.update(task, description=f"{state.step} {state.status}", completed=len(done))

            run = lm.pipelines.run(rp.RETRAIN, params, on_step=on_step)
        if run.status != "succeeded":
            console.print(
                f"[red]run {run.id} {run.status}[/]: {run.error}; see `loopml pipelines show {run.id} --logs`"
            )
            raise typer.Exit(1)
        evaluated = lm.pipelines.output(run.id, "evaluate")
        gate = lm.pipelines.output(run.id, "gate")
    console.print(
        table(
            f"held-out week {evaluated['held_out_week']}",
            ["metric", "champion", "candidate"],
            _compare(evaluated),
        )
    )
    verdict = "passed: now challenger" if gate["passed"] else "blocked"
    console.print(f"gate for version {gate['version']}: {verdict}")
    for g in gate["gates"]:
        console.print(f"  {g['gate']}: {g['summary']}")


def _compare(evaluated: dict[str, Any]) -> list[list[str]]:
    champ, cand = evaluated.get("champion") or {}, evaluated["candidate"]
    rows = []
    for key in ("accuracy", "precision", "recall", "precision_reject", "small_face_recall"):
        rows.append([key, _pct(champ.get(key)), _pct(cand.get(key))])
    for key in ("flagged_per_week", "capacity", "within_capacity"):
        rows.append([key, str(champ.get(key, "-")), str(cand.get(key))])
    return rows


# -- release -----------------------------------------------------------------------------------------
@release_app.command("shadow")
def release_shadow(
    candidate: str | None = typer.Option(None, help="Model ref to shadow (default: <model>@challenger)."),
) -> None:
    """Start the shadow test: the champion decides, the candidate scores every upload too."""
    from loopml.apps.moderation import release
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        out = release.start_shadow(lm, load_config(lm), candidate=candidate)
    console.print(
        f"endpoint {out['endpoint']} revision {out['revision']}: shadow v{out['challenger']} behind v{out['champion']}"
    )


@release_app.command("ab")
def release_ab(
    weight: float = typer.Option(0.5, min=0.01, max=0.99, help="Challenger's share of uploaders."),
) -> None:
    """Start the online A/B test (sticky by uploader)."""
    from loopml.apps.moderation import release
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        out = release.start_ab(lm, load_config(lm), weight)
    console.print(
        f"endpoint {out['endpoint']} revision {out['revision']}: A/B v{out['champion']} vs v{out['challenger']} ({weight:.0%})"
    )


@release_app.command("report")
def release_report(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The shadow agreement and the A/B per-arm precision/recall so far."""
    from loopml.apps.moderation import release
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        cfg = load_config(lm)
        shadow, ab = release.shadow_report(lm, cfg), release.ab_report(lm, cfg)
    if as_json:
        console.print_json(json.dumps({"shadow": shadow.to_dict(), "ab": ab.to_dict()}))
        return
    console.print(
        f"shadow: {shadow.shadowed} compared, agreement {_pct(shadow.agreement)}, p99 "
        f"{_num(shadow.primary_p99_ms)} ms vs {_num(shadow.shadow_p99_ms)} ms, errors {shadow.shadow_errors}"
    )
    rows = [
        [
            a.arm,
            ",".join(map(str, a.versions)),
            a.requests,
            a.labelled,
            a.flagged,
            _pct(a.precision),
            _pct(a.recall),
        ]
        for a in ab.arms
    ]
    console.print(
        table(
            "online A/B", ["arm", "versions", "uploads", "labelled", "flagged", "precision", "recall"], rows
        )
    )
    console.print(f"verdict: {ab.verdict}. {ab.explanation}")


@release_app.command("promote")
def release_promote(
    reason: str = typer.Option("won the online A/B test", help="Recorded with the alias move."),
) -> None:
    """Promote the challenger through the release gate; the endpoint serves the champion alone."""
    from loopml.apps.moderation import release
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        out = release.promote(lm, load_config(lm), reason=reason)
    console.print(
        f"champion is now v{out['champion']} (was v{out['previous']}); endpoint revision {out['endpoint_revision']}"
    )
    for g in out["gates"]:
        console.print(f"  {g['gate']}: {g['summary']}")


@release_app.command("end")
def release_end(reason: str = typer.Option("test ended", help="Recorded with the policy change.")) -> None:
    """Stop a shadow or A/B test without promoting."""
    from loopml.apps.moderation import release
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        out = release.end_test(lm, load_config(lm), reason=reason)
    console.print(f"endpoint {out['endpoint']} revision {out['revision']}: Single(champion)")


# -- capacity / status -------------------------------------------------------------------------------
@moderation_app.command("capacity")
def capacity(
    weeks: int = typer.Option(4, min=1, max=52, help="ISO weeks to show, this one included."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Flagged uploads per week against the operators' weekly capacity."""
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config

    with client() as lm:
        report = review.capacity_report(lm, load_config(lm), weeks=weeks)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    rows = [
        [
            w.week,
            w.uploads,
            w.flagged,
            w.reviewed,
            w.pending,
            w.auto_rejected,
            w.capacity,
            "ok" if w.within_capacity else "OVER",
        ]
        for w in report.weeks
    ]
    console.print(
        table(
            "flagged vs capacity",
            ["week", "uploads", "flagged", "reviewed", "waiting", "auto-rejected", "capacity", ""],
            rows,
        )
    )
    age = "-" if report.oldest_age_seconds is None else duration(report.oldest_age_seconds)
    console.print(f"queue: {report.queue_depth} waiting, oldest {age}")


@moderation_app.command("status")
def status() -> None:
    """Outcome counts, the review queue's age, the endpoint's policy and the model aliases."""
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config
    from loopml.apps.moderation.web.ui import versions_in_use

    with client() as lm:
        cfg = load_config(lm)
        counts = lm.async_requests.counts(review.KIND)
        age = lm.async_requests.oldest_age_seconds(review.KIND, review.REVIEW)
        versions = versions_in_use(lm, cfg.endpoint, cfg.model_name)
    console.print(
        table("uploads by status", ["status", "count"], [[k, v] for k, v in sorted(counts.items())])
    )
    console.print(
        f"review queue: {counts.get(review.REVIEW, 0)} waiting, oldest {'-' if age is None else duration(age)}"
    )
    console.print(
        table(
            "models in use",
            ["where", "ref", "version"],
            [[v["where"], v["ref"], v["version"]] for v in versions],
        )
    )


def tell(lm: Any, fast: bool) -> None:
    """Run the moderation story with a progress bar and print its figures (``loopml demo moderation``)."""
    from loopml.apps.moderation.story import run_moderation_story

    lines: list[str] = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("moderation", total=8)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        result = run_moderation_story(lm, fast=fast, say=lines.append, progress=progress)
    for line in lines:
        console.print(f"  {line}")
    console.print(table("moderation: what happened", ["figure", "value"], figures(result)))
    console.print(
        "  dashboard: `loopml up`, then http://127.0.0.1:8000/ui/moderation (and /ui/moderation/review)"
    )


def figures(result: Any) -> list[list[str]]:
    """The rows of the demo's summary table (a ``ModerationStoryResult``)."""
    v1, v2 = result.v1 or {}, result.v2 or {}
    cap = result.capacity or {}
    rows = [
        ["uploads by outcome", ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))],
        ["refused at upload (corrupt)", str(result.refused)],
        ["duplicate of a rejected photo caught", "yes" if result.duplicate_caught else "no"],
        ["published with faces blurred", str(result.blurred)],
        ["operator decisions (mistakes)", f"{result.reviewed} ({result.operator_mistakes})"],
        [
            f"precision v1 -> v2 (held-out week {result.held_out_week})",
            f"{_pct(v1.get('precision'))} -> {_pct(v2.get('precision'))}",
        ],
        ["recall v1 -> v2", f"{_pct(v1.get('recall'))} -> {_pct(v2.get('recall'))}"],
        [
            "small-face recall v1 -> v2",
            f"{_pct(v1.get('small_face_recall'))} -> {_pct(v2.get('small_face_recall'))}",
        ],
        [
            "flagged/week v1 -> v2 (capacity)",
            f"{v1.get('flagged_per_week', '-')} -> {v2.get('flagged_per_week', '-')} ({v2.get('capacity', '-')})",
        ],
        ["release gate", "passed" if (result.gate or {}).get("passed") else "blocked"],
        ["shadow agreement", _pct((result.shadow or {}).get("agreement"))],
        ["A/B verdict", (result.ab or {}).get("verdict", "not run")],
        ["release", result.promotion or "-"],
        ["champion", f"v{result.champion}"],
        [
            "flagged this week vs capacity",
            f"{cap.get('peak_flagged', '-')} / {cap.get('capacity_per_week', '-')}",
        ],
        ["notifications (webhook posts)", f"{result.notifications} ({result.webhook_posts})"],
        ["time", f"{result.seconds:.1f} s"],
    ]
    return rows
