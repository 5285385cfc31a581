"""From an upstream asset's value to batchor items, and the run id they deserve.

An upstream asset may hand the submit asset a ``pyarrow.Table``, a pandas or
polars ``DataFrame``, a list of row mappings, or the path of a Parquet / CSV /
JSONL file. Tables and rows become :class:`~batchor.BatchItem` values (one per row,
the row as payload, lineage in metadata); a path becomes the matching
checkpointed file source, so a crashed ingestion resumes from its checkpoint.

The run id is derived from what would be sent: the job name, the partition,
the job configuration and a digest of every item (id, payload, metadata and the
prompt ``build_prompt`` makes of it). Materializing the submit asset again with
the same data therefore finds the same run and resumes it instead of paying for
the same requests twice; changing the data, the prompt or the model starts a
new run.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from batchor import (
    LINEAGE_KEY,
    BatchItem,
    CheckpointedItemSource,
    ConfigurationError,
    InputError,
    Lineage,
    SourceRowError,
    canonical_json,
    check_run_id,
    file_format,
    file_source,
)

ACCEPTED_UPSTREAM = (
    "a pyarrow.Table, a pandas or polars DataFrame, a list of row dicts, or the path of a "
    ".parquet, .csv or .jsonl file"
)
"""What an upstream asset may produce, for error messages."""

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ROWS_PER_BATCH = 4096


@dataclass(frozen=True)
class UpstreamInput:
    """The items of one upstream value.

    ``items`` is what the :class:`~batchor.BatchJob` gets (a re-iterable of items,
    or a checkpointed file source); ``kind`` says which form the value had;
    ``identity`` is the source's own identity (a file's path and sha256) or
    ``None`` for in-memory values, whose content is covered by the item digest.
    """

    items: Iterable[BatchItem] | CheckpointedItemSource
    kind: str
    identity: str | None = None


def read_upstream(
    value: object, *, item_id_column: str, source_ref: str, partition_key: str | None
) -> UpstreamInput:
    """The items of an upstream value (table, DataFrame, rows or file path).

    ``source_ref`` names the upstream in lineage and errors (the asset key);
    ``partition_key`` goes into each item's lineage as ``partition_id``.
    """
    if isinstance(value, (str, os.PathLike)):
        return _file_input(os.fspath(value), item_id_column)
    table: pa.Table | None = None
    if isinstance(value, pa.Table):
        table = value
    elif isinstance(value, pa.RecordBatch):
        table = pa.Table.from_batches([value])
    elif _library_of(value) == "pandas" and hasattr(value, "columns"):
        table = pa.Table.from_pandas(value, preserve_index=False)
    elif _library_of(value) == "polars" and hasattr(value, "to_arrow"):
        table = value.to_arrow()
    if table is not None:
        if item_id_column not in table.column_names:
            raise ConfigurationError(
                f"upstream {source_ref}: item_id_column {item_id_column!r} is not a column; "
                f"columns: {', '.join(repr(name) for name in table.column_names) or '(none)'}"
            )
        rows = _RowItems(_table_rows(table), item_id_column, source_ref, partition_key)
        return UpstreamInput(items=rows, kind="table")
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for index, row in enumerate(value):
            if not isinstance(row, Mapping):
                raise InputError(
                    f"upstream {source_ref}: row {index + 1} is a {type(row).__name__}; a list "
                    "upstream must hold mappings (one dict per row)"
                )
        rows = _RowItems(lambda: iter(value), item_id_column, source_ref, partition_key)
        return UpstreamInput(items=rows, kind="rows")
    raise ConfigurationError(
        f"upstream {source_ref} produced a {type(value).__module__}.{type(value).__name__}; "
        f"batchor reads {ACCEPTED_UPSTREAM}"
    )


def value_of_partition(value: object, partition_key: str, partition_keys: Sequence[str]) -> object:
    """The upstream value for one partition of a run that covers ``partition_keys``.

    A partitioned upstream loaded for several partitions arrives as
    ``{partition key: value}`` (Dagster's IO managers, and
    :class:`~batchor_dagster.BatchorParquetIOManager` for the submit asset); an
    unpartitioned one is the same value for every partition.
    """
    if len(partition_keys) > 1 and isinstance(value, Mapping):
        if partition_key not in value:
            raise ConfigurationError(
                f"the upstream value of this run holds partitions {sorted(map(str, value))}, "
                f"not {partition_key!r}: its IO manager must load several partitions as a "
                "mapping of partition key to value"
            )
        return value[partition_key]
    return value


def deterministic_run_id(
    *,
    name: str,
    partition_key: str | None,
    job: Mapping[str, Any],
    source_identity: str | None,
    items_digest: str,
) -> str:
    """``<name>[.<partition>].<24 hex>``: the same inputs always give the same id.

    The readable parts are shortened and reduced to ``[A-Za-z0-9_-]``; the hash
    covers their exact values, so two partitions never share an id.
    """
    digest = hashlib.sha256(
        canonical_json([name, partition_key, job, source_identity, items_digest]).encode()
    ).hexdigest()[:24]
    parts = [_slug(name, 48) or "batchor"]
    if partition_key is not None:
        parts.append(_slug(partition_key, 40) or "partition")
    parts.append(digest)
    return check_run_id(".".join(parts))


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: dates and times as ISO text, decimals as text, bytes as
    base64, UUIDs as text, nested containers converted recursively."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return json_safe(tolist())
    return str(value)


class _RowItems:
    """Rows (dicts) as :class:`BatchItem` values; iterable any number of times."""

    def __init__(
        self,
        rows: Callable[[], Iterator[Mapping[str, Any]]],
        item_id_column: str,
        source_ref: str,
        partition_key: str | None,
    ) -> None:
        self._rows = rows
        self._item_id_column = item_id_column
        self._source_ref = source_ref
        self._partition_key = partition_key

    def __iter__(self) -> Iterator[BatchItem]:
        column = self._item_id_column
        for index, row in enumerate(self._rows()):
            if column not in row:
                raise SourceRowError(
                    f"the row has no item id column {column!r} "
                    f"(columns: {', '.join(repr(str(key)) for key in row)})",
                    source_ref=self._source_ref,
                    row_number=index + 1,
                    field=column,
                )
            item_id = _item_id(row[column])
            if item_id is None:
                raise SourceRowError(
                    f"the item id column {column!r} is empty",
                    source_ref=self._source_ref,
                    row_number=index + 1,
                    field=column,
                )
            lineage: Lineage = {
                "source_ref": self._source_ref,
                "partition_id": self._partition_key,
                "source_item_index": index,
                "source_primary_key": item_id,
                "source_namespace": None,
            }
            yield BatchItem(item_id, json_safe(row), {LINEAGE_KEY: lineage})


def _table_rows(table: pa.Table) -> Callable[[], Iterator[Mapping[str, Any]]]:
    def rows() -> Iterator[Mapping[str, Any]]:
        for batch in table.to_batches(max_chunksize=_ROWS_PER_BATCH):
            yield from batch.to_pylist()

    return rows


def _item_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text or None


def _required_item_id(column: str) -> Callable[[Any], str]:
    def item_id_from_row(row: Any) -> str:
        if not isinstance(row, Mapping):
            raise ValueError(f"expected an object with a {column!r} key, got {row!r}")
        item_id = _item_id(row[column])
        if item_id is None:
            raise ValueError(f"the item id column {column!r} is empty")
        return item_id

    return item_id_from_row


def _file_input(path: str, item_id_column: str) -> UpstreamInput:
    source = file_source(
        path, item_id_from_row=_required_item_id(item_id_column), payload_from_row=json_safe
    )
    return UpstreamInput(
        items=source,
        kind=file_format(path),
        identity=canonical_json(source.source_identity()),
    )


def _library_of(value: object) -> str:
    return type(value).__module__.split(".", 1)[0]


def _slug(text: str, limit: int) -> str:
    return _SLUG_UNSAFE.sub("-", text).strip("-_")[:limit].strip("-_")
