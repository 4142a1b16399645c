"""The online store interface: latest feature values per (table, entity key), read in one round trip.

Values are stored as one packed JSON blob per key (all of a view's features together) with the
event time they describe and the wall-clock time they were written, so a read can report each
value's *age* and a serving layer can decide what is too stale. Writes are *conditional*: an older
event never overwrites a newer one, which makes late-arriving pushes and re-run materialisations
harmless and keeps the online store equal to the offline "latest row per key".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: One row to write: (entity key as text, event time in epoch seconds, packed JSON value).
OnlineRow = tuple[str, float, bytes]


@dataclass(frozen=True, slots=True)
class StoredValue:
    """What the online store holds for one key: packed values, event time and write time (epoch s)."""

    event_ts: float
    written_at: float
    value: bytes


class OnlineStore(ABC):
    """Latest values per (table, key). ``table`` is a feature view version, e.g. ``"user_stats@2"``."""

    url: str

    @abstractmethod
    def write(self, table: str, rows: Iterable[OnlineRow], *, written_at: float | None = None) -> int:
        """Upsert rows, keeping the stored value when it has a newer event time. Returns rows sent."""

    @abstractmethod
    def read(self, table: str, keys: Sequence[str]) -> list[StoredValue | None]:
        """Values for ``keys`` in order (``None`` for a missing key), in one round trip."""

    def read_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[StoredValue | None]]:
        """Several tables at once; backends override this to keep it to one round trip."""
        return [self.read(table, keys) for table, keys in requests]

    @abstractmethod
    def count(self, table: str) -> int:
        """Number of keys stored for a table (for status pages; may scan)."""

    @abstractmethod
    def sample_keys(self, table: str, limit: int) -> list[str]:
        """Up to ``limit`` stored keys of a table (used by the consistency check)."""

    @abstractmethod
    def drop(self, table: str) -> int:
        """Delete every key of a table; returns how many were removed."""

    @abstractmethod
    def check(self) -> str:
        """One-line health description, or raise BackendUnavailableError."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release connections."""
