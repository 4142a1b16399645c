"""``loopml run`` and ``loopml pipelines ...`` on a project-local pipelines.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli.main import app
from loopml.errors import NotFoundError, ValidationError
from loopml.pipelines import unregister

PROJECT_PIPELINES = """
import logging
from loopml.pipelines import pipeline, step

@step
def greet(name: str, times: int) -> str:
    logging.getLogger("hello").info("greeting %s", name)
    return " ".join([f"hello {name}"] * times)

@step(retries=1, backoff_seconds=0)
def shout(greet: str, fail: bool) -> str:
    if fail:
        raise RuntimeError("asked to fail")
    return greet.upper()

@pipeline("tc-hello", schedule="0 6 * * 2", params={"name": "world", "times": 1, "fail": False})
def hello():
    return [greet, shout]
"""


@pytest.fixture
def project(lm_sqlite: Loopml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A project directory with pipelines.py, discovered like `loopml init` sets it up."""
    (tmp_path / "pipelines.py").write_text(PROJECT_PIPELINES)
    monkeypatch.setenv("LOOPML_HOME", str(lm_sqlite.settings.home_dir))
    sys.modules.pop("pipelines", None)
    yield CliRunner()
    sys.modules.pop("pipelines", None)
    unregister("tc-hello")


def test_run_shows_steps_and_caches_the_second_time(project: CliRunner) -> None:
    result = project.invoke(app, ["run", "tc-hello", "--param", "name=loop", "-p", "times=2"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "greet" in result.output and "shout" in result.output
    result = project.invoke(app, ["run", "tc-hello", "--param", "name=loop", "-p", "times=2", "--json"])
    data = json.loads(result.output)
    assert [s["label"] for s in data["steps"]] == ["skipped (cached)", "skipped (cached)"]
    assert data["params"] == {"name": "loop", "times": 2, "fail": False}


def test_failed_run_exits_non_zero_and_show_prints_logs(project: CliRunner) -> None:
    result = project.invoke(app, ["run", "tc-hello", "-p", "fail=true"])
    assert result.exit_code == 1
    assert "asked to fail" in result.output
    runs = json.loads(project.invoke(app, ["pipelines", "runs", "tc-hello", "--json"]).output)
    assert runs[0]["status"] == "failed"
    shown = project.invoke(app, ["pipelines", "show", runs[0]["id"], "--logs"])
    assert shown.exit_code == 0
    assert "greeting world" in shown.output and "--- attempt 2 ---" in shown.output
    table = project.invoke(app, ["pipelines", "runs"])
    assert runs[0]["id"] in table.output


def test_list_schedule_and_submit(project: CliRunner, lm_sqlite: Loopml) -> None:
    listed = project.invoke(app, ["pipelines", "list"])
    assert listed.exit_code == 0 and "greet -> shout" in listed.output and "0 6 * * 2" in listed.output
    sched = project.invoke(app, ["pipelines", "schedule", "--pause", "tc-hello"])
    assert sched.exit_code == 0 and "paused" in sched.output
    submitted = json.loads(project.invoke(app, ["run", "tc-hello", "--submit", "--json"]).output)
    run = lm_sqlite.pipelines.get_run(submitted["run_id"])
    assert (run.status, run.trigger, run.job_id) == ("queued", "manual", submitted["job_id"])


def test_bad_input_is_a_clear_error(project: CliRunner) -> None:
    result = project.invoke(app, ["run", "tc-helo"])
    assert isinstance(result.exception, NotFoundError) and "Did you mean: tc-hello" in str(result.exception)
    result = project.invoke(app, ["run", "tc-hello", "-p", "times=lots"])
    assert isinstance(result.exception, ValidationError) and "'times'" in str(result.exception)
    result = project.invoke(app, ["run", "tc-hello", "-p", "times"])
    assert isinstance(result.exception, ValidationError) and "key=value" in str(result.exception)
    result = project.invoke(app, ["run", "tc-hello", "-p", "colour=red"])
    assert isinstance(result.exception, ValidationError) and "no param 'colour'" in str(result.exception)
    result = project.invoke(app, ["pipelines", "show", "nope"])
    assert isinstance(result.exception, NotFoundError)
    result = project.invoke(app, ["pipelines", "schedule", "--resume", "tc-nothing"])
    assert isinstance(result.exception, NotFoundError)


def test_unimportable_pipeline_module_names_the_setting(
    lm_sqlite: Loopml, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.config import ConfigError

    monkeypatch.setenv("LOOPML_HOME", str(lm_sqlite.settings.home_dir))
    monkeypatch.setenv("LOOPML_PIPELINE_MODULES", '["no_such_pipelines_module"]')
    result = CliRunner().invoke(app, ["pipelines", "list"])
    assert isinstance(result.exception, ConfigError)
    assert "pipeline_modules" in str(result.exception) and "no_such_pipelines_module" in str(result.exception)
