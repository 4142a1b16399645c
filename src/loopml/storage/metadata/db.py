"""Engine, sessions and migrations for the metadata database (SQLite embedded, PostgreSQL in production).

SQLite is opened in WAL mode with a busy timeout and every transaction starts with
``BEGIN IMMEDIATE``: several processes (API, workers, scheduler) write at once, and a deferred
transaction that later upgrades to a write lock fails with "database is locked" instead of waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from loopml.errors import BackendUnavailableError, ConfigError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_upgrade_lock = threading.Lock()


class Database:
    """One metadata database: an engine, a session factory and schema migrations."""

    def __init__(self, url: str, *, auto_upgrade: bool = True, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        if not (self.is_sqlite or self.is_postgres):
            raise ConfigError(
                f"metadata_url {url!r}: use sqlite:///path.db or postgresql+psycopg://user@host/db"
            )
        self.engine = self._create_engine(url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._auto_upgrade = auto_upgrade
        self._upgraded = False

    # -- engine -------------------------------------------------------------------------------
    def _create_engine(self, url: str, echo: bool) -> Engine:
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                echo=echo,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )
            _configure_sqlite(engine)
            return engine
        try:
            return create_engine(
                url, echo=echo, pool_pre_ping=False, pool_recycle=1800, pool_size=10, max_overflow=20
            )
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"metadata_url {url!r} needs the PostgreSQL driver: pip install 'loopml[postgres]' ({exc})"
            ) from None

    # -- sessions -----------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error. Upgrades the schema on first use."""
        self.ensure_schema()
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ensure_schema(self) -> None:
        if self._upgraded or not self._auto_upgrade:
            return
        self.upgrade()

    # -- migrations ---------------------------------------------------------------------------
    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision`` (idempotent, safe when several processes start at once)."""
        from alembic import command

        with _upgrade_lock:
            if self._upgraded and revision == "head":
                return
            try:
                if self.current_revision() != self.head_revision():
                    with self._migration_lock():
                        command.upgrade(self.alembic_config(), revision)
            except OperationalError as exc:
                raise BackendUnavailableError(
                    f"Cannot reach the metadata database {self.display_url}: {exc.orig}. "
                    "Check LOOPML_METADATA_URL and that the server is running."
                ) from None
            self._upgraded = True

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Serialise migrations across processes (PostgreSQL advisory lock; SQLite's write lock)."""
        if not self.is_postgres:
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(74110001)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(74110001)"))
                conn.commit()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def check(self) -> str:
        """Return a one-line health description or raise BackendUnavailableError."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metadata database {self.display_url} unreachable: {exc.orig}"
            ) from None
        return f"ok (schema {self.current_revision() or 'not created'}, head {self.head_revision()})"

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
