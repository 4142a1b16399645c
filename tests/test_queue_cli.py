"""`loopml jobs ...` and `loopml worker --help` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml import Loopml, load_settings
from loopml.cli.main import app
from loopml.errors import ConflictError, NotFoundError, ValidationError

runner = CliRunner()


@pytest.fixture
def cli_lm(tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch) -> Loopml:
    """Point the CLI (which reads LOOPML_* from the environment) and a client at one database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_METADATA_URL", metadata_url)
    lm = Loopml(load_settings())
    yield lm
    lm.close()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_enqueue_list_show_stats(cli_lm: Loopml) -> None:
    assert "job 1 (train) queued in queue default" in _ok("jobs", "enqueue", "train", "--payload", '{"n": 3}')
    _ok("jobs", "enqueue", "score", "--queue", "batch", "--priority", "5", "--idempotency-key", "k1")
    _ok("jobs", "enqueue", "score", "--queue", "batch", "--priority", "5", "--idempotency-key", "k1")
    listing = _ok("jobs", "list")
    assert "train" in listing and "score" in listing and "jobs (2)" in listing
    data = json.loads(_ok("jobs", "list", "--json", "--queue", "batch"))
    assert [(j["kind"], j["priority"], j["idempotency_key"]) for j in data] == [("score", 5, "k1")]
    shown = _ok("jobs", "show", "1")
    assert "payload" in shown and '"n": 3' in shown
    stats = json.loads(_ok("jobs", "stats", "--json"))
    assert stats["batch"]["queued"] == 1 and stats["default"]["queued"] == 1
    assert stats["default"]["oldest_queued_age_s"] >= 0
    table = _ok("jobs", "stats")
    assert "oldest queued" in table and "batch" in table


def test_requeue_and_cancel(cli_lm: Loopml) -> None:
    job = cli_lm.jobs.enqueue("train")
    cli_lm.jobs.claim("w")
    cli_lm.jobs.fail(job.id, "w", "ValueError: no rows", retry=False)
    shown = _ok("jobs", "show", str(job.id))
    assert "last error" in shown and "ValueError: no rows" in shown
    assert "queued again" in _ok("jobs", "requeue", str(job.id), "--reason", "data fixed")
    assert "cancelled" in _ok("jobs", "cancel", str(job.id))
    assert cli_lm.jobs.get(job.id).status == "cancelled"


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["jobs", "show", "999"], NotFoundError, "job 999 does not exist"),
        (["jobs", "requeue", "999"], NotFoundError, "job 999 does not exist"),
        (["jobs", "list", "--status", "finished"], ValidationError, "status='finished': use one of"),
        (["jobs", "enqueue", "k", "--payload", "{oops"], ValidationError, "--payload is not valid JSON"),
        (["jobs", "enqueue", "k", "--payload", "[1]"], ValidationError, "--payload must be a JSON object"),
        (["worker", "--log-level", "chatty"], ValidationError, "--log-level 'chatty'"),
    ],
)
def test_bad_input_names_the_problem(cli_lm: Loopml, args: list[str], error: type, message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, error)
    assert message in str(result.exception)


def test_requeue_of_a_queued_job_is_a_conflict(cli_lm: Loopml) -> None:
    job = cli_lm.jobs.enqueue("train")
    result = runner.invoke(app, ["jobs", "requeue", str(job.id)])
    assert isinstance(result.exception, ConflictError) and "it is queued" in str(result.exception)


def test_typer_rejects_malformed_options(cli_lm: Loopml) -> None:
    assert runner.invoke(app, ["jobs", "show", "abc"]).exit_code == 2
    assert runner.invoke(app, ["worker", "--concurrency", "0"]).exit_code == 2


def test_help_texts() -> None:
    assert "--concurrency" in runner.invoke(app, ["worker", "--help"]).output
    out = runner.invoke(app, ["jobs", "--help"]).output
    for command in ("list", "show", "requeue", "cancel", "stats", "enqueue"):
        assert command in out
