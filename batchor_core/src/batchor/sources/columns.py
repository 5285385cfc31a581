"""Rows that become items by column names alone: an id column and payload columns.

What ``batchor start --id-column ... --prompt-column / --prompt-template`` and
the Dagster component build. A file source given the two functions of a
:class:`ColumnRows` reads like any other; a Parquet file read this way is also
ingested column by column, without a Python call per row (see
:mod:`batchor.engine.slices`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
"""Value types a payload keeps as they are (JSON already; the rest goes through JSON)."""


@dataclass(frozen=True, slots=True)
class ColumnRows:
    """Turns a row (a dict) into an item id and a payload of the prompt's columns.

    The id is the id column's value as text (it may not be missing or empty); the
    payload is a dict of ``fields``, values that are not JSON (dates, decimals,
    bytes) turned into their text.
    """

    id_column: str
    fields: tuple[str, ...]

    def item_id(self, row: Any) -> str:
        if type(row) is not dict and not isinstance(row, Mapping):
            raise ValueError(f"expected a JSON object, got {type(row).__name__}")
        return self.id_of(row[self.id_column])

    def id_of(self, value: Any) -> str:
        """The item id for an id column's ``value``."""
        if value is None or value == "":
            raise ValueError(f"the id column {self.id_column!r} is empty")
        return value if type(value) is str else str(value)

    def payload(self, row: Any) -> dict[str, Any]:
        if type(row) is not dict and not isinstance(row, Mapping):
            raise ValueError(f"expected a JSON object, got {type(row).__name__}")
        values = {name: row[name] for name in self.fields}
        if all(type(value) in JSON_SCALARS for value in values.values()):
            return values
        converted: dict[str, Any] = json.loads(json.dumps(values, default=str))
        return converted

    @classmethod
    def of(cls, item_id_from_row: Any, payload_from_row: Any) -> ColumnRows | None:
        """The :class:`ColumnRows` whose two functions these are, if they are."""
        rows = getattr(item_id_from_row, "__self__", None)
        if (
            type(rows) is cls
            and getattr(item_id_from_row, "__func__", None) is cls.item_id
            and getattr(payload_from_row, "__self__", None) is rows
            and getattr(payload_from_row, "__func__", None) is cls.payload
        ):
            return rows
        return None
