"""``ParquetItemSource``: a Parquet file read in record batches, resumable by row index.

Only the projected columns are read, a bounded number of rows at a time, and
column chunks are streamed rather than pre-buffered, so memory does not grow
with the file. Resuming skips whole row groups using the file metadata and
slices the first batch, instead of decoding the skipped rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batchor.errors import ConfigurationError
from batchor.sources._files import FileItemSource, describe_columns, read_checkpoint_ints
from batchor.sources.base import CheckpointedItem
from batchor.types import JSONValue

ParquetRow = dict[str, Any]

_CHECKPOINT_KEYS = ("next_row_index",)
_MAX_BATCH_ROWS = 16_384
_TARGET_BATCH_BYTES = 16 * 1024 * 1024
"""Uncompressed bytes of Arrow data decoded at once; rows become Python objects
one batch at a time, so this (times a small factor) bounds the memory used."""
_READ_BUFFER_BYTES = 1024 * 1024
"""Column chunks are streamed through a buffer of this size. pyarrow's default
(``pre_buffer=True``) loads every selected column chunk of the file up front,
which makes memory grow with the file."""


class ParquetItemSource(FileItemSource[ParquetRow]):
    """Items from a Parquet file, one row at a time as ``dict[str, Any]``.

    ``columns`` projects the file: only those columns are read and the row dicts
    hold only those keys (``None`` reads every column). A name that is not a
    top-level column of the file is an error at construction, which lists the
    columns that exist. ``payload_from_row`` defaults to the row dict itself.
    Row numbers in errors are 1-based row positions in the file.

    Checkpoint: ``{"next_row_index": int}``, the 0-based index of the next row.
    """

    kind = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        item_id_from_row: Callable[[ParquetRow], str],
        payload_from_row: Callable[[ParquetRow], Any] | None = None,
        metadata_from_row: Callable[[ParquetRow], Mapping[str, Any]] | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            path,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
        )
        name = type(self).__name__
        with self._open_parquet() as parquet:
            available: list[str] = list(parquet.schema_arrow.names)
        self._columns: list[str] | None = None
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise ConfigurationError(
                    f"{name}.columns must be a sequence of column names, got {columns!r}"
                )
            if not columns:
                raise ConfigurationError(f"{name}.columns must name at least one column")
            if len(set(columns)) != len(columns):
                raise ConfigurationError(f"{name}.columns names a column twice: {columns!r}")
            for column in columns:
                if column not in available:
                    raise ConfigurationError(
                        f"{name}.columns: {column!r} is not a column of {self._source_ref}; "
                        f"available columns: {describe_columns(available)}"
                    )
            self._columns = list(columns)

    @property
    def columns(self) -> list[str] | None:
        """The projected columns, or None when every column is read."""
        return None if self._columns is None else list(self._columns)

    def _reading_options(self) -> dict[str, JSONValue]:
        return {"columns": self.columns}

    def initial_checkpoint(self) -> JSONValue:
        """The first row."""
        return {"next_row_index": 0}

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]:
        """Rows from the checkpoint's row index on."""
        (row_index,) = read_checkpoint_ints(checkpoint, _CHECKPOINT_KEYS, type(self).__name__)
        build_item = self._builder.build_item
        for batch in self._record_batches(row_index, self._columns):
            for row in batch.to_pylist():
                item = build_item(row, row_index, row_index + 1)
                row_index += 1
                yield CheckpointedItem(item, {"next_row_index": row_index})

    def iter_columns(
        self, checkpoint: JSONValue, names: Sequence[str], size: int
    ) -> Iterator[tuple[int, dict[str, list[Any]]]]:
        """The rows from the checkpoint's row index on, ``size`` at a time, column by
        column: the index of the first row, and the values of each of ``names`` (as
        ``iter_from``'s rows hold them). The checkpoint after them is
        ``{"next_row_index": first + len(values)}``."""
        (row_index,) = read_checkpoint_ints(checkpoint, _CHECKPOINT_KEYS, type(self).__name__)
        pending: dict[str, list[Any]] = {name: [] for name in names}
        held = 0
        for batch in self._record_batches(row_index, list(names)):
            start = 0
            while start < batch.num_rows:
                take = min(size - held, batch.num_rows - start)
                piece = batch.slice(start, take)
                for name in names:
                    pending[name].extend(piece.column(name).to_pylist())
                held += take
                start += take
                if held == size:
                    yield row_index, pending
                    row_index += held
                    pending, held = {name: [] for name in names}, 0
        if held:
            yield row_index, pending

    def _record_batches(
        self, row_index: int, columns: list[str] | None
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows from ``row_index`` on, as record batches of ``columns``."""
        with self._open_parquet() as parquet:
            metadata = parquet.metadata
            row_groups: list[int] = []
            first_selected_row = 0
            group_start = 0
            for group in range(metadata.num_row_groups):
                group_end = group_start + metadata.row_group(group).num_rows
                if group_end > row_index:
                    if not row_groups:
                        first_selected_row = group_start
                    row_groups.append(group)
                group_start = group_end
            if not row_groups:
                return
            rows_to_skip = row_index - first_selected_row
            batches = parquet.iter_batches(
                batch_size=self._batch_size(parquet.metadata),
                row_groups=row_groups,
                columns=columns,
                use_threads=False,
            )
            for batch in batches:
                if rows_to_skip:
                    if rows_to_skip >= batch.num_rows:
                        rows_to_skip -= batch.num_rows
                        continue
                    batch = batch.slice(rows_to_skip)
                    rows_to_skip = 0
                yield batch

    def column_types(self) -> dict[str, pa.DataType]:
        """The Arrow type of each top-level column of the file."""
        with self._open_parquet() as parquet:
            schema = parquet.schema_arrow
        return {field.name: field.type for field in schema}

    def _open_parquet(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(
                self._source_ref, pre_buffer=False, buffer_size=_READ_BUFFER_BYTES
            )
        except FileNotFoundError:
            raise ConfigurationError(
                f"{type(self).__name__}: file not found: {self._source_ref}"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            raise ConfigurationError(
                f"{type(self).__name__}: cannot read {self._source_ref} as Parquet: {exc}"
            ) from exc

    def _batch_size(self, metadata: pq.FileMetaData) -> int:
        """Rows per record batch so one batch holds about ``_TARGET_BATCH_BYTES``
        of the projected columns (estimated from the row-group metadata)."""
        projected = None if self._columns is None else set(self._columns)
        total_bytes = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                column = row_group.column(index)
                if projected is None or column.path_in_schema.split(".", 1)[0] in projected:
                    total_bytes += column.total_uncompressed_size
        bytes_per_row = max(1, total_bytes // max(1, metadata.num_rows))
        return max(1, min(_MAX_BATCH_ROWS, _TARGET_BATCH_BYTES // int(bytes_per_row)))
