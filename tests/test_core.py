"""Settings, metadata migrations and the artifact store."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from loopml import ConfigError, IntegrityError, NotFoundError, load_settings
from loopml.storage.artifacts import ArtifactStore
from loopml.storage.metadata import Database
from loopml.storage.metadata.base import Base
from loopml.storage.metadata.core import list_events, record_event


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "h"))
    settings = load_settings()
    assert settings.resolved_metadata_url == f"sqlite:///{tmp_path / 'h' / 'loopml.db'}"
    assert settings.resolved_artifacts_url.startswith("file://")


def test_settings_from_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loopml.toml").write_text('home = "custom"\nport = 9001\n')
    settings = load_settings()
    assert settings.home_dir == (tmp_path / "custom").resolve()
    assert settings.port == 9001


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("metadata_url", "mysql://x/y", "metadata_url"),
        ("artifacts_url", "ftp://host/dir", "artifacts_url"),
        ("online_url", "memcached://x", "online_url"),
        ("port", "99999", "port"),
    ],
)
def test_invalid_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str, value: str, needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(f"LOOPML_{field.upper()}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value)
    assert f"LOOPML_{field.upper()}" in str(err.value)


def test_unknown_setting_in_toml_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loopml.toml").write_text('metdata_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match="metdata_url"):
        load_settings()


def test_migrations_match_the_orm_tables(metadata_url: str) -> None:
    """Every table the code declares is created by the migrations, column for column."""
    db = Database(metadata_url)
    db.upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    db.dispose()
    assert diff == [], f"migrations and ORM disagree: {diff}"


def test_events_are_written_in_the_callers_transaction(metadata_url: str) -> None:
    db = Database(metadata_url)
    with db.session() as session:
        record_event(session, "alias.moved", "model", "fraud", actor="ana", reason="beats champion")
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, "alias.moved", "model", "fraud")
        raise RuntimeError("rolled back")
    with db.session() as session:
        events = list_events(session, subject_type="model", subject_id="fraud")
        assert [(e.actor, e.reason) for e in events] == [("ana", "beats champion")]
        assert events[0].ts.tzinfo is not None
    db.dispose()


def test_artifacts_round_trip_and_dedupe(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "a").as_uri())
    d1 = store.put_bytes(b"hello")
    assert d1 == store.put_bytes(b"hello")
    assert store.get_bytes(d1) == b"hello"
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 3_000_000)
    d2 = store.put_file(src)
    assert store.get_file(d2, tmp_path / "out.bin").read_bytes() == src.read_bytes()


def test_artifacts_detect_corruption_and_missing(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "a").as_uri())
    digest = store.put_bytes(b"model weights")
    Path(store.uri(digest)).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.get_bytes(digest)
    with pytest.raises(NotFoundError, match="never stored"):
        store.get_bytes("sha256:" + "0" * 64)
    with pytest.raises(NotFoundError, match="64 hex"):
        store.get_bytes("md5:abc")
