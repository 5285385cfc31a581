"""CompositeItemSource: namespacing, lineage, resume across children, identity,
and wrapping a custom CheckpointedItemSource."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchor import LINEAGE_KEY, BatchItem
from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources import (
    CheckpointedItem,
    CheckpointedItemSource,
    CompositeItemSource,
    CsvItemSource,
    JsonlItemSource,
)


def read_all(source: CheckpointedItemSource, checkpoint: Any = None) -> list[CheckpointedItem]:
    start = source.initial_checkpoint() if checkpoint is None else checkpoint
    return list(source.iter_from(json.loads(json.dumps(start))))


class PipeFileSource:
    """A tiny custom format: one ``id|text`` record per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def source_identity(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"kind": "pipe", "source_ref": str(self.path), "sha256": digest}

    def initial_checkpoint(self) -> Any:
        return {"line": 0}

    def iter_from(self, checkpoint: Any) -> Iterator[CheckpointedItem]:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for index in range(checkpoint["line"], len(lines)):
            item_id, text = lines[index].split("|", 1)
            yield CheckpointedItem(BatchItem(item_id, {"text": text}), {"line": index + 1})


def csv_source(path: Path, text: str) -> CsvItemSource:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return CsvItemSource(
        path,
        item_id_from_row=lambda row: row["id"],
        payload_from_row=lambda row: {"text": row["text"]},
    )


def jsonl_source(path: Path, rows: list[dict[str, Any]]) -> JsonlItemSource:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return JsonlItemSource(
        path,
        item_id_from_row=lambda row: str(row["id"]) if isinstance(row, dict) else "",
        payload_from_row=lambda row: {"text": row["text"]} if isinstance(row, dict) else {},
    )


def test_duplicate_ids_across_children_are_namespaced(tmp_path: Path) -> None:
    source = CompositeItemSource(
        [
            csv_source(tmp_path / "items-a.csv", "id,text\n1,a one\n2,a two\n"),
            jsonl_source(tmp_path / "items-b.jsonl", [{"id": 1, "text": "b one"}]),
        ]
    )

    items = [c.item for c in read_all(source)]

    assert [item.item_id for item in items] == ["0-items-a:1", "0-items-a:2", "1-items-b:1"]
    assert [item.payload["text"] for item in items] == ["a one", "a two", "b one"]
    assert source.namespaces == ("0-items-a", "1-items-b")


def test_lineage_keeps_the_child_id_source_and_namespace(tmp_path: Path) -> None:
    path = tmp_path / "items-b.jsonl"
    source = CompositeItemSource(
        [
            csv_source(tmp_path / "items-a.csv", "id,text\n1,a\n"),
            jsonl_source(path, [{"id": 1, "text": "b"}, {"id": 2, "text": "c"}]),
        ]
    )

    last = read_all(source)[-1].item

    assert last.metadata[LINEAGE_KEY] == {
        "source_ref": str(path),
        "partition_id": None,
        "source_item_index": 1,
        "source_primary_key": "2",
        "source_namespace": "1-items-b",
    }


def test_children_with_the_same_file_name_get_distinct_namespaces(tmp_path: Path) -> None:
    source = CompositeItemSource(
        [
            csv_source(tmp_path / "2026-01" / "export.csv", "id,text\n1,x\n"),
            csv_source(tmp_path / "2026-02" / "export.csv", "id,text\n1,y\n"),
        ]
    )

    assert [c.item.item_id for c in read_all(source)] == ["0-export:1", "1-export:1"]


def test_unsafe_characters_in_file_names_become_dashes(tmp_path: Path) -> None:
    source = CompositeItemSource([csv_source(tmp_path / "my items:v2 (final).csv", "id,text\n")])

    assert source.namespaces == ("0-my-items-v2-final",)


def test_resumes_from_every_checkpoint_across_children(tmp_path: Path) -> None:
    source = CompositeItemSource(
        [
            csv_source(tmp_path / "a.csv", 'id,text\n1,"multi\nline"\n2,x\n'),
            csv_source(tmp_path / "empty.csv", "id,text\n"),
            jsonl_source(tmp_path / "b.jsonl", [{"id": i, "text": str(i)} for i in range(4)]),
        ]
    )

    everything = read_all(source)

    assert len(everything) == 6
    assert everything[0].checkpoint == {
        "child": 0,
        "checkpoint": {
            "byte_offset": len('id,text\n1,"multi\nline"\n'),
            "next_row_index": 1,
            "lines_read": 3,
        },
    }
    for position, checkpointed in enumerate(everything):
        assert read_all(source, checkpointed.checkpoint) == everything[position + 1 :]


def test_identity_lists_children_in_order(tmp_path: Path) -> None:
    first = csv_source(tmp_path / "a.csv", "id,text\n1,x\n")
    second = jsonl_source(tmp_path / "b.jsonl", [{"id": 1, "text": "y"}])

    identity = CompositeItemSource([first, second]).source_identity()

    assert identity == {
        "kind": "composite",
        "children": [first.source_identity(), second.source_identity()],
    }
    assert CompositeItemSource([first, second]).source_identity() == identity
    assert CompositeItemSource([second, first]).source_identity() != identity


def test_identity_changes_when_a_child_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    first = CompositeItemSource([jsonl_source(path, [{"id": 1, "text": "y"}])]).source_identity()

    changed = CompositeItemSource([jsonl_source(path, [{"id": 1, "text": "z"}])]).source_identity()

    assert changed != first


def test_custom_source_can_be_wrapped(tmp_path: Path) -> None:
    pipe_path = tmp_path / "legacy.pipe"
    pipe_path.write_text("7|seven\n8|eight\n", encoding="utf-8")
    custom = PipeFileSource(pipe_path)
    assert isinstance(custom, CheckpointedItemSource)
    source = CompositeItemSource([csv_source(tmp_path / "a.csv", "id,text\n7,x\n"), custom])

    everything = read_all(source)

    assert [c.item.item_id for c in everything] == ["0-a:7", "1-legacy:7", "1-legacy:8"]
    assert everything[-1].item.metadata[LINEAGE_KEY] == {
        "source_ref": None,
        "partition_id": None,
        "source_item_index": None,
        "source_primary_key": "8",
        "source_namespace": "1-legacy",
    }
    assert everything[-1].checkpoint == {"child": 1, "checkpoint": {"line": 2}}
    assert source.source_identity()["children"][1] == custom.source_identity()
    for position, checkpointed in enumerate(everything):
        assert read_all(source, checkpointed.checkpoint) == everything[position + 1 :]


def test_nested_composites_join_namespaces(tmp_path: Path) -> None:
    inner = CompositeItemSource([csv_source(tmp_path / "a.csv", "id,text\n1,x\n")])
    outer = CompositeItemSource([csv_source(tmp_path / "b.csv", "id,text\n1,y\n"), inner])

    last = read_all(outer)[-1].item

    assert last.item_id == "1-composite:0-a:1"
    assert last.metadata[LINEAGE_KEY]["source_namespace"] == "1-composite:0-a"
    assert last.metadata[LINEAGE_KEY]["source_primary_key"] == "1"


def test_bad_row_in_a_child_names_the_child_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\nnot json\n', encoding="utf-8")
    source = CompositeItemSource(
        [
            csv_source(tmp_path / "a.csv", "id,text\n1,x\n"),
            JsonlItemSource(bad, item_id_from_row=lambda row: str(row["id"])),
        ]
    )

    with pytest.raises(SourceRowError, match=f"^{re.escape(str(bad))}, row 2: invalid JSON"):
        read_all(source)


def test_empty_list_and_non_sources_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least one source"):
        CompositeItemSource([])
    with pytest.raises(ConfigurationError, match=r"sources\[1\] is a list"):
        CompositeItemSource([csv_source(tmp_path / "a.csv", "id,text\n"), []])  # type: ignore[list-item]


def test_checkpoint_naming_a_missing_child_is_rejected(tmp_path: Path) -> None:
    source = CompositeItemSource([csv_source(tmp_path / "a.csv", "id,text\n1,x\n")])

    with pytest.raises(ConfigurationError, match="a checkpoint is"):
        read_all(source, {"child": 3, "checkpoint": None})
