"""Shared fixtures: a fresh loopml home per test, on SQLite and (when reachable) PostgreSQL.

PostgreSQL tests create a throw-away database per test from a migrated template, so they are
isolated and fast. Set LOOPML_REQUIRE_SERVICES=1 (CI does) to turn "service not reachable" skips
into failures.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml import Loopml, load_settings
from loopml.storage.metadata import Database
from services import PG_ADMIN_URL, need_postgres


class _PgTemplates:
    """One migrated template database per test session; each test clones it."""

    def __init__(self) -> None:
        self.template: str | None = None
        self.created: list[str] = []

    def _admin(self):  # sqlalchemy engine in autocommit, for CREATE/DROP DATABASE
        from sqlalchemy import create_engine

        return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def fresh_url(self) -> str:
        from sqlalchemy import text

        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        engine = self._admin()
        try:
            if self.template is None:
                name = f"loopml_tpl_{uuid.uuid4().hex[:8]}"
                with engine.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                db = Database(f"{base}/{name}")
                db.upgrade()
                db.dispose()
                self.template = name
                self.created.append(name)
            name = f"loopml_t_{uuid.uuid4().hex[:10]}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
            self.created.append(name)
        finally:
            engine.dispose()
        return f"{base}/{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        from sqlalchemy import text

        engine = self._admin()
        with engine.connect() as conn:
            for name in reversed(self.created):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[_PgTemplates]:
    templates = _PgTemplates()
    yield templates
    templates.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "loopml.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty metadata database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "home" / "loopml.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    need_postgres()
    return request.getfixturevalue("pg_templates").fresh_url()


@pytest.fixture
def lm(tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopml]:
    """A Loopml client on a fresh home (artifacts and online store under tmp_path), on both backends."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(home=tmp_path / "home", metadata_url=metadata_url)
    client = Loopml(settings)
    yield client
    client.close()


@pytest.fixture
def lm_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[Loopml]:
    """A Loopml client on the embedded default only (for tests that are not about the backend)."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "home" / "loopml.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, target)
    client = Loopml(load_settings(home=tmp_path / "home"))
    yield client
    client.close()
