"""ParquetItemSource: row dicts, projection, row-group resume, identity and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchor import LINEAGE_KEY
from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources import CheckpointedItem, CheckpointedItemSource, ParquetItemSource


def read_all(source: CheckpointedItemSource, checkpoint: Any = None) -> list[CheckpointedItem]:
    start = source.initial_checkpoint() if checkpoint is None else checkpoint
    return list(source.iter_from(json.loads(json.dumps(start))))


def write_parquet(path: Path, rows: int, row_group_size: int = 4) -> Path:
    table = pa.table(
        {
            "id": [f"p{index}" for index in range(rows)],
            "text": [f"text {index}" for index in range(rows)],
            "score": [index / 2 for index in range(rows)],
            "tags": [[f"t{index}"] * (index % 3) for index in range(rows)],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-rows // row_group_size)
    return path


def by_id(row: dict[str, Any]) -> str:
    return str(row["id"])


def test_rows_become_items_with_row_dict_payload_and_lineage(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=10)

    items = [c.item for c in read_all(ParquetItemSource(path, item_id_from_row=by_id))]

    assert [item.item_id for item in items] == [f"p{index}" for index in range(10)]
    assert items[5].payload == {"id": "p5", "text": "text 5", "score": 2.5, "tags": ["t5", "t5"]}
    assert items[5].metadata == {
        LINEAGE_KEY: {
            "source_ref": str(path),
            "partition_id": None,
            "source_item_index": 5,
            "source_primary_key": "p5",
            "source_namespace": None,
        }
    }


def test_seed_example_with_projection_and_row_functions(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=3)
    source = ParquetItemSource(
        path,
        item_id_from_row=lambda row: str(row["id"]),
        payload_from_row=lambda row: {"text": str(row["text"])},
        columns=["id", "text"],
    )

    items = [c.item for c in read_all(source)]

    assert [item.payload for item in items] == [{"text": f"text {index}"} for index in range(3)]


def test_projection_reads_only_the_requested_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=9)
    source = ParquetItemSource(path, item_id_from_row=by_id, columns=["text", "id"])

    rows = [c.item.payload for c in read_all(source)]

    assert all(set(row) == {"id", "text"} for row in rows)
    assert rows[8] == {"id": "p8", "text": "text 8"}
    assert source.source_identity()["columns"] == ["text", "id"]


def test_resumes_from_every_checkpoint_across_row_groups(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=23, row_group_size=5)
    source = ParquetItemSource(path, item_id_from_row=by_id, columns=["id", "score"])

    everything = read_all(source)

    assert [c.checkpoint for c in everything] == [{"next_row_index": i} for i in range(1, 24)]
    for position, checkpointed in enumerate(everything):
        assert read_all(source, checkpointed.checkpoint) == everything[position + 1 :]


def test_checkpoint_past_the_end_yields_nothing(tmp_path: Path) -> None:
    source = ParquetItemSource(write_parquet(tmp_path / "a.parquet", 4), item_id_from_row=by_id)

    assert read_all(source, {"next_row_index": 4}) == []
    assert read_all(source, {"next_row_index": 99}) == []


def test_identity_changes_with_content_and_projection_and_is_stable_otherwise(
    tmp_path: Path,
) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=6)
    first = ParquetItemSource(path, item_id_from_row=by_id, columns=["id"]).source_identity()
    again = ParquetItemSource(path, item_id_from_row=by_id, columns=["id"]).source_identity()
    every_column = ParquetItemSource(path, item_id_from_row=by_id).source_identity()

    write_parquet(path, rows=7)
    changed = ParquetItemSource(path, item_id_from_row=by_id, columns=["id"]).source_identity()

    assert first == again
    assert first["kind"] == "parquet"
    assert every_column["columns"] is None
    assert every_column["content_sha256"] == first["content_sha256"]
    assert changed["content_sha256"] != first["content_sha256"]


def test_unknown_column_is_named_with_the_available_ones(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=2)

    with pytest.raises(ConfigurationError) as raised:
        ParquetItemSource(path, item_id_from_row=by_id, columns=["id", "txt"])

    message = str(raised.value)
    assert "'txt' is not a column of" in message
    assert str(path) in message
    assert "available columns: 'id', 'text', 'score', 'tags'" in message


def test_file_that_is_not_parquet_is_rejected_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    path.write_text("id,text\n1,x\n", encoding="utf-8")

    with pytest.raises(ConfigurationError, match=r"cannot read .*items\.parquet as Parquet"):
        ParquetItemSource(path, item_id_from_row=by_id)


def test_missing_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"ParquetItemSource: file not found"):
        ParquetItemSource(tmp_path / "missing.parquet", item_id_from_row=by_id)


def test_item_id_function_raising_names_the_1_based_row(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=12)

    def picky_id(row: dict[str, Any]) -> str:
        if row["id"] == "p9":
            raise RuntimeError("no p9 please")
        return str(row["id"])

    with pytest.raises(SourceRowError) as raised:
        read_all(ParquetItemSource(path, item_id_from_row=picky_id))

    assert raised.value.row_number == 10
    assert str(raised.value) == (
        f"{path}, row 10: item_id_from_row raised RuntimeError: no p9 please"
    )
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_column_left_out_of_the_projection_is_named_as_missing(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "items.parquet", rows=2)
    source = ParquetItemSource(
        path, item_id_from_row=by_id, payload_from_row=lambda row: row["text"], columns=["id"]
    )

    with pytest.raises(SourceRowError, match=r"row 1, field 'text': payload_from_row raised"):
        read_all(source)


def test_memory_stays_bounded_by_batches_not_by_the_file(tmp_path: Path) -> None:
    path = tmp_path / "large.parquet"
    rows = 80_000
    texts = [os.urandom(150).hex() for _ in range(rows)]
    table = pa.table({"id": [str(index) for index in range(rows)], "text": texts})
    pq.write_table(table, path, row_group_size=10_000)
    del table, texts
    file_bytes = path.stat().st_size
    source = ParquetItemSource(path, item_id_from_row=by_id)
    baseline = pa.total_allocated_bytes()

    peak = 0
    count = 0
    for checkpointed in source.iter_from(source.initial_checkpoint()):
        count += 1
        if checkpointed.item.metadata[LINEAGE_KEY]["source_item_index"] % 1_000 == 0:
            peak = max(peak, pa.total_allocated_bytes() - baseline)

    assert count == rows
    assert peak < file_bytes / 2
