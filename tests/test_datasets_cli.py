"""``loopml datasets ...`` end to end through Typer, plus the datasets migration check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from loopml.cli.main import app
from loopml.errors import NotFoundError, ValidationError
from loopml.storage.metadata import Database
from loopml.storage.metadata.base import Base

MY_TABLES = {"datasets", "dataset_versions", "quarantine_rows"}
CONTRACT = {
    "columns": [
        {"name": "id", "dtype": "int", "unique": True},
        {"name": "amount", "dtype": "float", "min": 0},
        {"name": "kind", "dtype": "category", "allowed": ["card", "cash"]},
    ],
    "max_bad_share": 0.6,
}


@pytest.fixture
def cli(tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_METADATA_URL", metadata_url)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        if code is not None and result.exit_code != code:
            raise AssertionError(f"exit {result.exit_code}: {result.output}\n{result.exception!r}")
        return result

    (tmp_path / "contract.json").write_text(json.dumps(CONTRACT))
    (tmp_path / "pay.csv").write_text(
        "id,amount,kind,note\n1,9.5,card,a\n2,-1,cash,b\n3,4,bitcoin,c\n1,2,cash,d\n4,7,cash,e\n"
    )
    return run


def test_datasets_cli_round_trip(cli, tmp_path: Path) -> None:
    out = cli("datasets", "define", "payments", "--contract", "contract.json").output
    assert "dataset payments defined (3 columns: id:int, amount:float, kind:category)" in out
    out = cli("datasets", "ingest", "payments", "pay.csv").output
    assert "accepted as version 1" in out and "quarantined 3" in out
    assert "greater_than_or_equal_to(0)" in out and "dropped: note" in out
    assert "payments" in cli("datasets", "list").output
    versions = cli("datasets", "versions", "payments").output
    assert "pay.csv" in versions
    show = cli("datasets", "show", "payments", "--version", "1").output
    assert "payments@1" in show and "rows 2" in show and "cash(1)" in show
    quarantine = cli("datasets", "quarantine", "payments", "--limit", "10").output
    assert "unique(id)" in quarantine and "isin" in quarantine and "bitcoin" in quarantine
    assert json.loads(cli("datasets", "contract", "payments").output)["columns"][0]["name"] == "id"
    (tmp_path / "pay2.csv").write_text("id,amount,kind\n1,1,card\n2,2,card\n3,3,card\n")
    cli("datasets", "ingest", "payments", "pay2.csv")
    diff = cli("datasets", "diff", "payments", "1", "2").output
    assert "rows 2 -> 3 (+1)" in diff and "cash" in diff
    sql = cli("datasets", "sql", 'select sum(amount) as total from "payments@1"').output
    assert "16.5" in sql
    lines = cli("datasets", "sql", "select id from payments order by id", "--json").output
    assert '"id": 3' in lines


def test_datasets_cli_errors(cli, tmp_path: Path) -> None:
    result = cli("datasets", "show", "nope", code=1)
    assert isinstance(result.exception, NotFoundError) and "does not exist" in str(result.exception)
    (tmp_path / "bad.json").write_text('{"columns": [{"name": "x", "dtype": "decimal"}]}')
    result = cli("datasets", "define", "payments", "--contract", "bad.json", code=1)
    assert isinstance(result.exception, ValidationError) and "dtype 'decimal' is unknown" in str(
        result.exception
    )
    strict = {**CONTRACT, "max_bad_share": 0.1}
    (tmp_path / "strict.json").write_text(json.dumps(strict))
    result = cli("datasets", "ingest", "payments", "pay.csv", "--contract", "strict.json", code=1)
    assert "REFUSED" in result.output
    assert "refused: 60.00% bad rows, the contract allows 10.00%" in result.output
    assert "3" in cli("datasets", "quarantine", "payments").output
    result = cli("datasets", "ingest", "payments", "missing.csv", code=1)
    assert isinstance(result.exception, NotFoundError)
    result = cli("datasets", "diff", "payments", "1", "x", code=1)
    assert isinstance(result.exception, (ValidationError, NotFoundError))
    help_text = cli("datasets", "ingest", "--help").output
    assert "good rows become a version" in help_text and "--contract" in help_text


def test_datasets_migration_matches_the_orm(metadata_url: str) -> None:
    """The datasets tables the ORM declares are exactly what 0002_datasets creates (both backends)."""
    db = Database(metadata_url)
    db.upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    db.dispose()

    def table_of(entry: object) -> str | None:
        item = entry[0] if isinstance(entry, list) else entry
        for part in item[1:]:  # type: ignore[index]
            name = getattr(part, "name", None) if not hasattr(part, "table") else part.table.name
            if isinstance(part, str):
                name = part if part in MY_TABLES else None
            if name:
                return name
        return None

    mine = [d for d in diff if table_of(d) in MY_TABLES]
    assert mine == [], f"datasets migration and ORM disagree: {mine}"
