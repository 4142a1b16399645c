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
    """One migrated template database per test session; tests borrow clones of it from a pool.

    A clone goes back to the pool after its test, emptied with one TRUNCATE. Dropping a database
    costs a checkpoint, so dropping one per test made the session's teardown take minutes.
    """

    def __init__(self) -> None:
        self.template: str | None = None
        self.tables: set[str] = set()
        self.head: str | None = None
        self.created: list[str] = []
        self.free: list[str] = []

    def _admin(self):  # sqlalchemy engine in autocommit, for CREATE/DROP DATABASE
        from sqlalchemy import create_engine

        return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    @property
    def base(self) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0]

    def fresh_url(self) -> str:
        from sqlalchemy import text

        if self.free:
            return f"{self.base}/{self.free.pop()}"
        engine = self._admin()
        try:
            if self.template is None:
                name = f"loopml_tpl_{uuid.uuid4().hex[:8]}"
                with engine.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                db = Database(f"{self.base}/{name}")
                db.upgrade()
                db.dispose()
                self.template = name
                self.created.append(name)
                self.tables, self.head = self._schema(name)
            name = f"loopml_t_{uuid.uuid4().hex[:10]}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
            self.created.append(name)
        finally:
            engine.dispose()
        return f"{self.base}/{name}"

    def _schema(self, name: str) -> tuple[set[str], str | None]:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"{self.base}/{name}", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                tables = {
                    r[0]
                    for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                }
                head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        finally:
            engine.dispose()
        return tables, head

    def release(self, url: str) -> None:
        """Empty the clone and pool it; a clone whose schema a test changed is dropped at the end instead."""
        from sqlalchemy import create_engine, text

        name = url.rsplit("/", 1)[1]
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                tables = {
                    r[0]
                    for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                }
                head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if tables != self.tables or head != self.head:
                    return
                data = sorted(tables - {"alembic_version"})
                conn.execute(
                    text(
                        f"TRUNCATE {', '.join(chr(34) + t + chr(34) for t in data)} RESTART IDENTITY CASCADE"
                    )
                )
        except Exception:  # a test that broke its database: it is dropped with the rest
            return
        finally:
            engine.dispose()
        self.free.append(name)

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
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty metadata database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "home" / "loopml.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sqlite_template, target)
        yield f"sqlite:///{target}"
        return
    need_postgres()
    templates = request.getfixturevalue("pg_templates")
    url = templates.fresh_url()
    yield url
    templates.release(url)


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


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A local two-CPU Ray instance for one test module (skipped, with the reason, without the extra)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'loopml[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
