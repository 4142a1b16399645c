"""Alembic environment: runs on the engine that ``Database`` hands over (no URL parsing twice)."""

from __future__ import annotations

from alembic import context

from loopml.storage.metadata import tables  # noqa: F401  (registers every table on Base.metadata)
from loopml.storage.metadata.base import Base

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
