"""``BatchorParquetIOManager``: assets stored as Parquet files, loaded as ``pyarrow.Table``.

Each asset is one file, ``<base_dir>/<asset key path>.parquet``; a partitioned
asset is a directory with one file per partition,
``<base_dir>/<asset key path>/<partition key>.parquet`` (the partition key
percent-encoded where it is not filename-safe). Files are written to a temporary
name and renamed, so a reader never sees half a file. A downstream asset that
depends on several partitions gets them concatenated into one table, unless its
op has the tag :data:`PARTITIONS_AS_MAPPING` (the submit asset's has, so a
single-run backfill gets ``{partition key: table}``). An output that covers
several partitions (a single-run backfill) is such a mapping too: one file each.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManagerFactory,
    InitResourceContext,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
)
from pydantic import Field

from batchor import ConfigurationError

PARTITIONS_AS_MAPPING = "batchor/partitions_as_mapping"
"""Op tag: ``"true"`` loads several partitions as ``{partition key: table}`` for that op."""


class BatchorParquetIOManager(ConfigurableIOManagerFactory):  # type: ignore[type-arg]
    """Stores ``pyarrow.Table`` (or pandas ``DataFrame``) outputs as Parquet and loads
    them back as ``pyarrow.Table``.

    ``base_dir`` defaults to ``<instance storage directory>/batchor_parquet`` (under
    ``$DAGSTER_HOME``).
    """

    base_dir: str | None = Field(
        default=None,
        description="Directory for the Parquet files; default: the instance's storage dir",
    )

    def create_io_manager(self, context: InitResourceContext) -> ParquetTableIOManager:
        base_dir = self.base_dir
        if base_dir is None:
            base_dir = os.path.join(context.instance.storage_directory(), "batchor_parquet")  # type: ignore[union-attr]
        return ParquetTableIOManager(Path(base_dir))


class ParquetTableIOManager(IOManager):
    """The IO manager :class:`BatchorParquetIOManager` builds, rooted at ``base_dir``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir

    def path_for(self, asset_key_path: list[str], partition_key: str | None) -> Path:
        """The file of an asset (or of one of its partitions)."""
        parts = [_safe_name(part) for part in asset_key_path]
        if partition_key is None:
            return self.base_dir.joinpath(*parts[:-1], parts[-1] + ".parquet")
        return self.base_dir.joinpath(*parts, _safe_name(partition_key) + ".parquet")

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        key_path = list(context.asset_key.path)
        if not context.has_asset_partitions:
            self._write(self.path_for(key_path, None), _as_table(obj, context), context)
            return
        partitions = list(context.asset_partition_keys)
        if len(partitions) == 1 and not isinstance(obj, Mapping):
            self._write(self.path_for(key_path, partitions[0]), _as_table(obj, context), context)
            return
        if not isinstance(obj, Mapping) or set(obj) != set(partitions):
            raise ConfigurationError(
                f"{context.asset_key.to_user_string()} covers partitions {partitions} in one "
                "run: its output must be a mapping of each partition key to its table"
            )
        rows = 0
        for partition in partitions:
            table = _as_table(obj[partition], context)
            self._write(self.path_for(key_path, partition), table, context, add_metadata=False)
            rows += table.num_rows
        directory = self.base_dir.joinpath(*[_safe_name(part) for part in key_path])
        context.add_output_metadata(
            {"path": MetadataValue.path(str(directory)), "dagster/row_count": rows}
        )

    def load_input(self, context: InputContext) -> pa.Table | dict[str, pa.Table]:
        key_path = list(context.asset_key.path)
        if not context.has_asset_partitions:
            return self._read(self.path_for(key_path, None), context)
        tables = {
            partition: self._read(self.path_for(key_path, partition), context)
            for partition in context.asset_partition_keys
        }
        if len(tables) == 1:
            return next(iter(tables.values()))
        if context.op_def is not None and context.op_def.tags.get(PARTITIONS_AS_MAPPING) == "true":
            return tables
        return pa.concat_tables(list(tables.values()), promote_options="default")

    def _write(
        self, path: Path, table: pa.Table, context: OutputContext, *, add_metadata: bool = True
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        os.close(handle)
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if add_metadata:
            context.add_output_metadata(
                {"path": MetadataValue.path(str(path)), "dagster/row_count": table.num_rows}
            )

    def _read(self, path: Path, context: InputContext) -> pa.Table:
        if not path.is_file():
            raise ConfigurationError(
                f"no Parquet file for {context.asset_key.to_user_string()} at {path}: "
                "materialize that asset (or partition) first"
            )
        return pq.read_table(path)


def _as_table(obj: Any, context: OutputContext) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if type(obj).__module__.split(".", 1)[0] == "pandas" and hasattr(obj, "columns"):
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise ConfigurationError(
        f"BatchorParquetIOManager stores pyarrow Tables and pandas DataFrames; "
        f"{context.asset_key.to_user_string()} returned a {type(obj).__name__}"
    )


def _safe_name(text: str) -> str:
    """A file name for ``text``: kept when it is plainly safe, else percent-encoded."""
    quoted = urllib.parse.quote(text, safe="-_=")
    return quoted if quoted.strip(".") else quoted.replace(".", "%2E") or "%00"
