"""``loopml runs list|show|compare|experiments`` and the SVG/HTML metric charts."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml import Loopml, NotFoundError, ValidationError
from loopml.cli.main import app
from loopml.tracking.chart import downsample, render_svg
from loopml.tracking.models import MetricPoint

runner = CliRunner()
NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def two_runs(lm: Loopml, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Two finished runs; the CLI is pointed at the same metadata database through LOOPML_* variables."""
    monkeypatch.setenv("LOOPML_HOME", str(lm.settings.home_dir))
    monkeypatch.setenv("LOOPML_METADATA_URL", lm.settings.resolved_metadata_url)
    ids = []
    for lr, losses in ((0.1, [1.0, 0.5, 0.3]), (0.01, [1.0, 0.8, 0.6])):
        with lm.tracking.start_run("cli", name=f"lr{lr}", params={"lr": lr, "seed": 1}) as run:
            for loss in losses:
                run.log_metric("val_loss", loss)
            run.log_metric("acc", 1 - losses[-1])
        ids.append(run.id)
    return ids[0], ids[1]


def test_runs_list_and_experiments(two_runs: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.cli import common

    monkeypatch.setattr(common.console, "width", 160)  # a real terminal, not the 80-column default
    result = runner.invoke(app, ["runs", "list", "--experiment", "cli"])
    assert result.exit_code == 0, result.output
    assert two_runs[0][:12] in result.output and two_runs[1][:12] in result.output
    assert "finished" in result.output and "val_loss=0.3" in result.output
    as_json = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    assert {r["id"] for r in as_json} == set(two_runs)
    result = runner.invoke(app, ["runs", "experiments"])
    assert "cli" in result.output and "2" in result.output


def test_runs_show_prints_params_metrics_and_writes_charts(two_runs: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "charts" / "run.html"
    result = runner.invoke(app, ["runs", "show", two_runs[0][:8], "--chart", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("lr", "0.1", "val_loss", "0.3", "wrote"):
        assert text in result.output
    page = out.read_text()
    assert page.count("<svg") == 2 and "val_loss" in page and "<polyline" in page
    svg = tmp_path / "loss.svg"
    result = runner.invoke(app, ["runs", "show", two_runs[0], "--chart", str(svg), "--metric", "val_loss"])
    assert result.exit_code == 0, result.output
    ET.fromstring(svg.read_text())  # well-formed XML
    shown = json.loads(runner.invoke(app, ["runs", "show", two_runs[0], "--json"]).output)
    assert shown["params"] == {"lr": "0.1", "seed": "1"} and shown["metrics"]["val_loss"]["last"] == 0.3


def test_runs_compare_table_and_json(two_runs: tuple[str, str]) -> None:
    result = runner.invoke(app, ["runs", "compare", *two_runs])
    assert result.exit_code == 0, result.output
    assert "param lr" in result.output and "seed" not in result.output
    assert "val_loss best" in result.output and "val_loss final" in result.output
    data = json.loads(runner.invoke(app, ["runs", "compare", *two_runs, "--json"]).output)
    loss = next(m for m in data["metrics"] if m["key"] == "val_loss")
    assert (loss["goal"], loss["best_run"], loss["final"]) == ("min", two_runs[0], [0.3, 0.6])
    result = runner.invoke(app, ["runs", "compare", *two_runs, "--goal", "val_loss=max", "--all-params"])
    assert result.exit_code == 0 and "seed" in result.output and "val_loss best ↑" in result.output


BAD_CLI_CALLS = [
    (["runs", "show", "nosuchrun"], NotFoundError, "loopml runs list"),
    (["runs", "show", "{run}", "--chart", "out.png"], ValidationError, ".html or .svg"),
    (["runs", "show", "{run}", "--chart", "all.svg"], ValidationError, "--metric"),
    (["runs", "show", "{run}", "--chart", "x.html", "--metric", "val_los"], NotFoundError, "val_loss"),
    (["runs", "compare", "{run}"], ValidationError, "at least two"),
    (["runs", "compare", "{run}", "{other}", "--goal", "val_loss"], ValidationError, "key=min"),
    (["runs", "list", "--experiment", "clli"], NotFoundError, "Did you mean: cli"),
    (["runs", "list", "--status", "ok"], ValidationError, "status"),
]


def test_cli_errors_name_the_problem(two_runs: tuple[str, str]) -> None:
    for args, error, needle in BAD_CLI_CALLS:
        argv = [a.format(run=two_runs[0], other=two_runs[1]) for a in args]
        result = runner.invoke(app, argv)
        assert isinstance(result.exception, error), (argv, result.output)
        assert needle in str(result.exception), argv


def test_help_texts() -> None:
    for cmd in (["runs", "--help"], ["runs", "show", "--help"], ["runs", "compare", "--help"]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0 and "Usage" in result.output


def _points(values: list[float]) -> list[MetricPoint]:
    return [MetricPoint(step=i, value=v, ts=NOW) for i, v in enumerate(values)]


def test_downsample_keeps_spikes_and_the_step_order() -> None:
    values = [1.0] * 10_000
    values[4321] = 99.0
    values[7000] = -5.0
    reduced = downsample(_points(values), max_points=200)
    assert len(reduced) <= 200
    assert {p.value for p in reduced} >= {99.0, -5.0}
    assert [p.step for p in reduced] == sorted(p.step for p in reduced)


def test_svg_handles_nan_inf_single_points_and_escapes_names() -> None:
    svg = render_svg("loss<&>", _points([1.0, math.nan, 0.5, 0.4, math.inf, 0.2]))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 1  # 0.5, 0.4 (the NaN and the inf split the line)
    assert len(root.findall(f"{ns}circle")) == 3  # lone 1.0, lone 0.2, and the +inf marker
    assert "loss&lt;&amp;&gt;" in svg
    assert "no finite values" in render_svg("x", _points([math.nan]))
    ET.fromstring(render_svg("flat", _points([2.0, 2.0])))
