"""Import every table module so ``Base.metadata`` is complete (used by Alembic and tests)."""

from loopml.storage.metadata import (  # noqa: F401
    alerts,
    async_requests,
    core,
    datasets,
    endpoints,
    features,
    inference,
    jobs,
    loop,
    monitoring,
    notify,
    pipelines,
    registry,
    tracking,
)
