"""Import every table module so ``Base.metadata`` is complete (used by Alembic and tests)."""

from loopml.storage.metadata import (  # noqa: F401
    alerts,
    core,
    datasets,
    endpoints,
    features,
    inference,
    jobs,
    pipelines,
    registry,
    tracking,
)
