"""Metadata database: ORM tables, Alembic migrations and the queries every domain module uses."""

from loopml.storage.metadata.db import Database

__all__ = ["Database"]
