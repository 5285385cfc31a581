"""Deterministic, resumable item sources: CSV, JSONL, Parquet, Composite, and the
:class:`CheckpointedItemSource` protocol for custom formats."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchor.errors import ConfigurationError
from batchor.sources.base import (
    CheckpointedItem,
    CheckpointedItemSource,
    ChecksResume,
    SealsCheckpoints,
)
from batchor.sources.composite import CompositeItemSource
from batchor.sources.csv_file import CsvItemSource
from batchor.sources.jsonl_file import JsonlItemSource
from batchor.sources.parquet_file import ParquetItemSource

FILE_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File name suffix -> input format, as :func:`file_source` reads them."""


def file_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file's suffix, or a clear error."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    found = FILE_FORMATS.get(suffix)
    if found is None:
        known = ", ".join(sorted(FILE_FORMATS))
        raise ConfigurationError(
            f"{os.fspath(path)}: unknown input format {suffix or '(no extension)'!r}; "
            f"use one of {known}"
        )
    return found


def file_source(
    path: str | os.PathLike[str],
    *,
    item_id_from_row: Callable[[Any], str],
    payload_from_row: Callable[[Any], Any] | None = None,
    csv_encoding: str = "utf-8",
    columns: Sequence[str] | None = None,
    metadata_from_row: Callable[[Any], Mapping[str, Any]] | None = None,
) -> CsvItemSource | JsonlItemSource | ParquetItemSource:
    """The built-in source for ``path``'s format (see :func:`file_format`).
    ``csv_encoding`` applies to CSV files, ``columns`` projects Parquet files."""
    kind = file_format(path)
    if kind == "csv":
        return CsvItemSource(
            path,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
            encoding=csv_encoding,
        )
    if kind == "jsonl":
        return JsonlItemSource(
            path,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
        )
    return ParquetItemSource(
        path,
        item_id_from_row=item_id_from_row,
        payload_from_row=payload_from_row,
        metadata_from_row=metadata_from_row,
        columns=None if columns is None else list(columns),
    )


__all__ = [
    "FILE_FORMATS",
    "CheckpointedItem",
    "CheckpointedItemSource",
    "ChecksResume",
    "CompositeItemSource",
    "CsvItemSource",
    "JsonlItemSource",
    "ParquetItemSource",
    "SealsCheckpoints",
    "file_format",
    "file_source",
]
