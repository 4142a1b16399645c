"""Datasets: contracts, validated ingest with row-exact quarantine, immutable versions, diffs and SQL.

``lm.datasets`` is a ``DatasetStore``; see docs/datasets.md for the walkthrough.
"""

from loopml.data.contract import DTYPES, Column, Contract
from loopml.data.models import (
    CheckSummary,
    DatasetInfo,
    DatasetVersion,
    Freshness,
    IngestRefusedError,
    IngestReport,
    IngestResult,
    PartitionInfo,
)
from loopml.data.stats import ColumnDiff, StatsDiff
from loopml.data.store import DatasetStore

__all__ = [
    "DTYPES",
    "CheckSummary",
    "Column",
    "ColumnDiff",
    "Contract",
    "DatasetInfo",
    "DatasetStore",
    "DatasetVersion",
    "Freshness",
    "IngestRefusedError",
    "IngestReport",
    "IngestResult",
    "PartitionInfo",
    "StatsDiff",
]
