"""JsonlItemSource: parsed rows, lineage, resume, identity and bad lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchor import LINEAGE_KEY
from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources import CheckpointedItem, CheckpointedItemSource, JsonlItemSource


def read_all(source: CheckpointedItemSource, checkpoint: Any = None) -> list[CheckpointedItem]:
    start = source.initial_checkpoint() if checkpoint is None else checkpoint
    return list(source.iter_from(json.loads(json.dumps(start))))


def assert_resumes_from_every_checkpoint(source: CheckpointedItemSource) -> None:
    everything = read_all(source)
    assert everything
    for position, checkpointed in enumerate(everything):
        assert read_all(source, checkpointed.checkpoint) == everything[position + 1 :]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def by_id(row: Any) -> str:
    return str(row["id"])


def test_lines_become_items_with_parsed_payload_and_lineage(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1, "text": "héllo"}, {"id": 2}])

    items = [c.item for c in read_all(JsonlItemSource(path, item_id_from_row=by_id))]

    assert [item.item_id for item in items] == ["1", "2"]
    assert items[0].payload == {"id": 1, "text": "héllo"}
    assert items[1].metadata[LINEAGE_KEY] == {
        "source_ref": str(path),
        "partition_id": None,
        "source_item_index": 1,
        "source_primary_key": "2",
        "source_namespace": None,
    }


def test_seed_example_row_functions_work(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 7, "text": "summarize me"}])
    source = JsonlItemSource(
        path,
        item_id_from_row=lambda row: str(row["id"]) if isinstance(row, dict) else "",
        payload_from_row=lambda row: {"text": row["text"]} if isinstance(row, dict) else {},
    )

    (checkpointed,) = read_all(source)

    assert checkpointed.item.item_id == "7"
    assert checkpointed.item.payload == {"text": "summarize me"}


def test_rows_may_be_any_json_value(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [["a", 1], "b", 3])

    items = [c.item for c in read_all(JsonlItemSource(path, item_id_from_row=json.dumps))]

    assert [item.payload for item in items] == [["a", 1], "b", 3]


def test_blank_lines_are_skipped_but_counted_in_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a"}\n\n   \n{"id": "b"}\r\n{"id": "c"}', encoding="utf-8")
    source = JsonlItemSource(path, item_id_from_row=by_id)

    everything = read_all(source)

    assert [c.item.item_id for c in everything] == ["a", "b", "c"]
    assert [c.item.metadata[LINEAGE_KEY]["source_item_index"] for c in everything] == [0, 1, 2]
    assert everything[-1].checkpoint == {
        "byte_offset": path.stat().st_size,
        "next_row_index": 3,
        "lines_read": 5,
    }
    assert_resumes_from_every_checkpoint(source)


def test_resumes_from_every_checkpoint(tmp_path: Path) -> None:
    rows = [{"id": f"r{index}", "text": "x" * index + "\n é"} for index in range(25)]
    source = JsonlItemSource(write_jsonl(tmp_path / "items.jsonl", rows), item_id_from_row=by_id)

    assert_resumes_from_every_checkpoint(source)


def test_identity_is_stable_and_changes_with_content(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1}])
    first = JsonlItemSource(path, item_id_from_row=by_id).source_identity()
    again = JsonlItemSource(str(path), item_id_from_row=by_id).source_identity()

    write_jsonl(path, [{"id": 2}])
    changed = JsonlItemSource(path, item_id_from_row=by_id).source_identity()

    assert first == again
    assert first["kind"] == "jsonl"
    assert first["source_ref"] == str(path)
    assert changed["content_sha256"] != first["content_sha256"]


def test_invalid_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n{"id": 3}\n', encoding="utf-8")

    with pytest.raises(SourceRowError) as raised:
        read_all(JsonlItemSource(path, item_id_from_row=by_id))

    assert raised.value.source_ref == str(path)
    assert raised.value.row_number == 3
    assert str(raised.value).startswith(f"{path}, row 3: invalid JSON")
    assert isinstance(raised.value.__cause__, json.JSONDecodeError)


def test_line_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "\xff"}\n')

    with pytest.raises(SourceRowError, match=r"row 2: invalid JSON"):
        read_all(JsonlItemSource(path, item_id_from_row=by_id))


def test_missing_key_names_the_field_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1}, {"key": 2}])

    with pytest.raises(SourceRowError) as raised:
        read_all(JsonlItemSource(path, item_id_from_row=by_id))

    assert (raised.value.row_number, raised.value.field) == (2, "id")
    assert "no column 'id' (columns: 'key')" in str(raised.value)


def test_non_string_item_id_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1}])

    with pytest.raises(SourceRowError, match=r"row 1: item_id_from_row must return .* got 1"):
        read_all(JsonlItemSource(path, item_id_from_row=lambda row: row["id"]))


def test_metadata_function_must_return_a_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1}])
    source = JsonlItemSource(path, item_id_from_row=by_id, metadata_from_row=lambda row: ["x"])  # type: ignore[arg-type,return-value]

    with pytest.raises(SourceRowError, match=r"row 1: metadata_from_row must return a mapping"):
        read_all(source)


def test_missing_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"JsonlItemSource: file not found"):
        JsonlItemSource(tmp_path / "missing.jsonl", item_id_from_row=by_id)


def test_file_removed_after_construction_fails_clearly_on_first_use(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": 1}])
    source = JsonlItemSource(path, item_id_from_row=by_id)
    path.unlink()

    with pytest.raises(ConfigurationError, match=r"file not found: .*items\.jsonl"):
        read_all(source)


def test_malformed_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    source = JsonlItemSource(write_jsonl(tmp_path / "a.jsonl", [{"id": 1}]), item_id_from_row=by_id)

    with pytest.raises(ConfigurationError, match=r"checkpoint key 'byte_offset'"):
        read_all(source, {"next_row_index": 0})
