"""Complete request rows with feature-store values before the model sees them.

A row carries the entity key (and request-time fields); the model row is the looked-up features
plus the ``request`` fields, in one ``online_features`` round trip for the whole batch. The entity
key itself only reaches the model if it is also listed in ``request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopml.errors import ValidationError


def lookup_rows(feature_store: Any, lookup: Any, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model input rows for ``rows`` under a ``FeatureLookup`` (``entity_key``, ``features``, ``request``).

    Missing entity keys or request fields are the caller's mistake (ValidationError naming
    ``rows[i].field``); an unreachable online store raises BackendUnavailableError, which the runtime
    treats as a failed call (fallback / circuit breaker), not as bad input.
    """
    key = lookup.entity_key
    keys = []
    for i, row in enumerate(rows):
        value = row.get(key)
        if value is None:
            raise ValidationError(
                f"rows[{i}].{key} is missing: this endpoint looks features up by {key!r}; send it in every row",
                field=f"rows[{i}].{key}",
            )
        keys.append(value)
    request: dict[str, list[Any]] = {}
    for name in lookup.request:
        column = []
        for i, row in enumerate(rows):
            if name not in row:
                raise ValidationError(
                    f"rows[{i}].{name} is missing: the endpoint's features need the request field {name!r}",
                    field=f"rows[{i}].{name}",
                )
            column.append(row[name])
        request[name] = column
    got = feature_store.online_features({key: keys}, lookup.features, request=request or None)
    values = got.values
    out = []
    for i in range(len(rows)):
        model_row = {name: column[i] for name, column in values.items()}
        for name in lookup.request:
            model_row.setdefault(name, request[name][i])
        out.append(model_row)
    return out
