"""The shared handles every domain service is built from: settings, metadata database, artifact store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.config import Settings, load_settings
from loopml.storage.artifacts import ArtifactStore
from loopml.storage.metadata import Database


@dataclass
class Context:
    """Passed to every service constructor (``DatasetStore(ctx)``, ``JobQueue(ctx)`` ...)."""

    settings: Settings
    db: Database
    artifacts: ArtifactStore
    #: Lazily created shared objects (online store, tables engine ...), keyed by name.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Context:
        settings = settings or load_settings(**overrides)
        settings.home_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            db=Database(settings.resolved_metadata_url),
            artifacts=ArtifactStore(settings.resolved_artifacts_url),
        )

    def close(self) -> None:
        self.db.dispose()
