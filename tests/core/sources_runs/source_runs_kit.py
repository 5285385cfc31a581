"""Inputs of every source kind, and the sources that read them, for the source-run
tests and their crash child.

Every kind reads the same logical rows (``{"id": ..., "text": ...}``): one CSV,
JSONL or Parquet file, or a composite of a CSV file (the first half of the rows)
and a JSONL file (the second half).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batchor import (
    BatchItem,
    BatchJob,
    ChunkPolicy,
    CompositeItemSource,
    CsvItemSource,
    JsonlItemSource,
    OpenAIProviderConfig,
    ParquetItemSource,
    PromptParts,
)
from batchor.sources import CheckpointedItemSource

KINDS = ("csv", "jsonl", "parquet", "composite")
FILE_KINDS = ("csv", "jsonl", "parquet")
COMPOSITE_CHILDREN = ("items-a.csv", "items-b.jsonl")

Row = dict[str, str]
RowHook = Callable[[Any], None]


def rows(count: int, *, prefix: str = "r") -> list[Row]:
    return [{"id": f"{prefix}{n:03d}", "text": f"document number {n}"} for n in range(count)]


def write_file(path: Path, rows: Sequence[Row]) -> Path:
    """``rows`` as a CSV, JSONL or Parquet file, by the suffix of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text"])
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        table = pa.table({"id": [row["id"] for row in rows], "text": [row["text"] for row in rows]})
        pq.write_table(table, path, row_group_size=8)
    return path


def input_paths(kind: str, directory: Path) -> list[Path]:
    """The files a source of ``kind`` reads, in order."""
    if kind == "composite":
        return [directory / name for name in COMPOSITE_CHILDREN]
    return [directory / f"items.{kind}"]


def write_input(kind: str, directory: Path, all_rows: Sequence[Row]) -> list[Path]:
    """Write ``all_rows`` as the input of a ``kind`` source (a composite splits them
    in half between its two files)."""
    paths = input_paths(kind, directory)
    if kind != "composite":
        return [write_file(paths[0], all_rows)]
    half = (len(all_rows) + 1) // 2
    return [write_file(paths[0], all_rows[:half]), write_file(paths[1], all_rows[half:])]


def file_source(path: Path, on_row: RowHook | None = None) -> CheckpointedItemSource:
    """The source for one input file; ``on_row`` sees every row read (and may raise)."""

    def item_id(row: Any) -> str:
        if on_row is not None:
            on_row(row)
        return str(row["id"])

    def payload(row: Any) -> dict[str, str]:
        return {"text": str(row["text"])}

    if path.suffix == ".csv":
        return CsvItemSource(path, item_id_from_row=item_id, payload_from_row=payload)
    if path.suffix == ".jsonl":
        return JsonlItemSource(path, item_id_from_row=item_id, payload_from_row=payload)
    return ParquetItemSource(
        path, item_id_from_row=item_id, payload_from_row=payload, columns=["id", "text"]
    )


def make_source(
    kind: str, directory: Path, on_row: RowHook | None = None
) -> CheckpointedItemSource:
    sources = [file_source(path, on_row) for path in input_paths(kind, directory)]
    return CompositeItemSource(sources) if kind == "composite" else sources[0]


def expected_ids(kind: str, all_rows: Sequence[Row]) -> list[str]:
    """The run item ids of ``all_rows`` read by a ``kind`` source, in input order."""
    if kind != "composite":
        return [row["id"] for row in all_rows]
    half = (len(all_rows) + 1) // 2
    return [f"0-items-a:{row['id']}" for row in all_rows[:half]] + [
        f"1-items-b:{row['id']}" for row in all_rows[half:]
    ]


def expected_lineage(kind: str, directory: Path, all_rows: Sequence[Row]) -> dict[str, Any]:
    """``metadata["batchor_lineage"]`` of every run item id."""
    lineage: dict[str, Any] = {}
    paths = input_paths(kind, directory)
    half = (len(all_rows) + 1) // 2
    for position, row in enumerate(all_rows):
        child = 1 if kind == "composite" and position >= half else 0
        index = position - half if child else position
        namespace = f"{child}-{paths[child].stem}" if kind == "composite" else None
        item_id = f"{namespace}:{row['id']}" if namespace else row["id"]
        lineage[item_id] = {
            "source_ref": str(paths[child].resolve()),
            "partition_id": None,
            "source_item_index": index,
            "source_primary_key": row["id"],
            "source_namespace": namespace,
        }
    return lineage


def text_prompt(item: BatchItem) -> PromptParts:
    return PromptParts(prompt=item.payload["text"])


def make_job(
    source: CheckpointedItemSource | Iterable[BatchItem],
    provider_config: OpenAIProviderConfig,
    *,
    slice_size: int = 10,
) -> BatchJob:
    return BatchJob(
        items=source,
        build_prompt=text_prompt,
        provider_config=provider_config,
        chunk_policy=ChunkPolicy(ingest_slice_size=slice_size),
    )


class RowRecorder:
    """A row hook that records the ids it sees and can break at one of them."""

    def __init__(self, break_at: str | None = None) -> None:
        self.seen: list[str] = []
        self.break_at = break_at

    def __call__(self, row: Any) -> None:
        row_id = str(row["id"]) if isinstance(row, dict) and "id" in row else None
        if row_id is not None and row_id == self.break_at:
            raise RuntimeError(f"the input broke at {row_id}")
        if row_id is not None:
            self.seen.append(row_id)
