"""CsvItemSource: rows, lineage, resume, quoted newlines, identity and bad rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchor import LINEAGE_KEY
from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources import CheckpointedItem, CheckpointedItemSource, CsvItemSource


def read_all(source: CheckpointedItemSource, checkpoint: Any = None) -> list[CheckpointedItem]:
    start = source.initial_checkpoint() if checkpoint is None else checkpoint
    return list(source.iter_from(json.loads(json.dumps(start))))


def assert_resumes_from_every_checkpoint(source: CheckpointedItemSource) -> None:
    everything = read_all(source)
    assert everything
    for position, checkpointed in enumerate(everything):
        assert read_all(source, checkpointed.checkpoint) == everything[position + 1 :]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def by_id(row: dict[str, str]) -> str:
    return row["id"]


def test_rows_become_items_with_row_payload_and_lineage(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1,hello\na2,world\n")

    items = [c.item for c in read_all(CsvItemSource(path, item_id_from_row=by_id))]

    assert [item.item_id for item in items] == ["a1", "a2"]
    assert items[1].payload == {"id": "a2", "text": "world"}
    assert items[1].metadata == {
        LINEAGE_KEY: {
            "source_ref": str(path.resolve()),
            "partition_id": None,
            "source_item_index": 1,
            "source_primary_key": "a2",
            "source_namespace": None,
        }
    }


def test_user_metadata_is_kept_next_to_lineage(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text,lang\na1,hello,en\n")
    source = CsvItemSource(
        path,
        item_id_from_row=by_id,
        payload_from_row=lambda row: {"text": row["text"]},
        metadata_from_row=lambda row: {"lang": row["lang"]},
    )

    (checkpointed,) = read_all(source)

    assert checkpointed.item.payload == {"text": "hello"}
    assert checkpointed.item.metadata["lang"] == "en"
    assert checkpointed.item.metadata[LINEAGE_KEY]["source_item_index"] == 0


def test_relative_path_is_resolved_to_absolute_source_ref(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "items.csv", "id\na1\n")
    monkeypatch.chdir(tmp_path)

    source = CsvItemSource("items.csv", item_id_from_row=by_id)

    assert source.source_identity()["source_ref"] == str(tmp_path / "items.csv")
    assert read_all(source)[0].item.metadata[LINEAGE_KEY]["source_ref"] == str(
        tmp_path / "items.csv"
    )


def test_quoted_fields_may_span_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        'id,text\r\na1,"line one\r\nline two"\r\nb2,"say ""hi""\n\n,end"\r\nc3,plain\r\n',
    )

    items = [c.item for c in read_all(CsvItemSource(path, item_id_from_row=by_id))]

    assert [(item.item_id, item.payload["text"]) for item in items] == [
        ("a1", "line one\r\nline two"),
        ("b2", 'say "hi"\n\n,end'),
        ("c3", "plain"),
    ]


def test_resumes_from_every_checkpoint_with_multiline_fields_and_blank_lines(
    tmp_path: Path,
) -> None:
    lines = ["id,text"]
    for index in range(12):
        text = f'"multi\nline {index}"' if index % 3 == 0 else f"text {index}"
        lines.append(f"r{index},{text}")
        if index % 4 == 1:
            lines.append("")
    path = write(tmp_path / "items.csv", "\n".join(lines) + "\n")
    source = CsvItemSource(path, item_id_from_row=by_id)

    assert len(read_all(source)) == 12
    assert_resumes_from_every_checkpoint(source)


def test_file_without_trailing_newline_resumes(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1,x\na2,y")
    source = CsvItemSource(path, item_id_from_row=by_id)

    assert [c.item.item_id for c in read_all(source)] == ["a1", "a2"]
    assert_resumes_from_every_checkpoint(source)


def test_checkpoints_are_small_json_with_byte_offset_and_row_index(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1,x\na2,y\n")
    source = CsvItemSource(path, item_id_from_row=by_id)

    checkpoints = [c.checkpoint for c in read_all(source)]

    assert checkpoints == [
        {"byte_offset": len("id,text\na1,x\n"), "next_row_index": 1, "lines_read": 2},
        {"byte_offset": len("id,text\na1,x\na2,y\n"), "next_row_index": 2, "lines_read": 3},
    ]


def test_delimiter_and_encoding_are_honoured(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id;text\nä1;café\n", encoding="latin-1")
    source = CsvItemSource(path, item_id_from_row=by_id, encoding="latin-1", delimiter=";")

    (checkpointed,) = read_all(source)

    assert checkpointed.item.payload == {"id": "ä1", "text": "café"}
    assert source.source_identity()["delimiter"] == ";"


def test_utf8_sig_strips_the_byte_order_mark_from_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1,x\n", encoding="utf-8-sig")

    source = CsvItemSource(path, item_id_from_row=by_id, encoding="utf-8-sig")

    assert [c.item.item_id for c in read_all(source)] == ["a1"]
    assert_resumes_from_every_checkpoint(source)


def test_encoding_that_is_not_ascii_compatible_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id\na1\n", encoding="utf-16")

    with pytest.raises(ConfigurationError, match="utf-16"):
        CsvItemSource(path, item_id_from_row=by_id, encoding="utf-16")


def test_header_only_and_empty_files_yield_nothing(tmp_path: Path) -> None:
    header_only = write(tmp_path / "header.csv", "id,text\n")
    empty = write(tmp_path / "empty.csv", "")

    assert read_all(CsvItemSource(header_only, item_id_from_row=by_id)) == []
    assert read_all(CsvItemSource(empty, item_id_from_row=by_id)) == []


def test_identity_is_stable_and_changes_with_content(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1,x\n")
    first = CsvItemSource(path, item_id_from_row=by_id).source_identity()
    again = CsvItemSource(str(path), item_id_from_row=lambda row: row["text"]).source_identity()

    write(path, "id,text\na1,y\n")
    changed = CsvItemSource(path, item_id_from_row=by_id).source_identity()

    assert first == again
    assert first["kind"] == "csv"
    assert first["content_sha256"] != changed["content_sha256"]
    assert json.loads(json.dumps(first)) == first


def test_row_with_wrong_number_of_fields_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", 'id,text\na1,"two\nlines"\na2,x,extra\n')
    source = CsvItemSource(path, item_id_from_row=by_id)

    with pytest.raises(SourceRowError) as raised:
        read_all(source)

    assert raised.value.source_ref == str(path)
    assert raised.value.row_number == 4
    assert str(raised.value).startswith(f"{path}, row 4: expected 2 fields")


def test_row_with_too_few_fields_is_an_error_not_padding(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,text\na1\n")

    with pytest.raises(SourceRowError, match=r"row 2: expected 2 fields .*got 1"):
        read_all(CsvItemSource(path, item_id_from_row=by_id))


def test_bad_row_after_resume_still_reports_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", 'id,text\na1,"x\ny"\na2,z\na3\n')
    source = CsvItemSource(path, item_id_from_row=by_id)
    first = next(iter(source.iter_from(source.initial_checkpoint())))

    with pytest.raises(SourceRowError, match=r"row 5: expected 2 fields"):
        read_all(source, first.checkpoint)


def test_missing_column_names_the_column_and_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "key,text\na1,x\n")

    with pytest.raises(SourceRowError) as raised:
        read_all(CsvItemSource(path, item_id_from_row=by_id))

    assert raised.value.field == "id"
    assert raised.value.row_number == 2
    assert "no column 'id'" in str(raised.value)
    assert "'key', 'text'" in str(raised.value)
    assert isinstance(raised.value.__cause__, KeyError)


def test_item_id_function_raising_is_wrapped_with_its_cause(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,n\na1,1\na2,oops\n")

    def numbered_id(row: dict[str, str]) -> str:
        return f"{row['id']}-{int(row['n'])}"

    with pytest.raises(
        SourceRowError, match=r"row 3: item_id_from_row raised ValueError"
    ) as raised:
        read_all(CsvItemSource(path, item_id_from_row=numbered_id))

    assert isinstance(raised.value.__cause__, ValueError)


def broken(row: dict[str, str]) -> dict[str, str]:
    raise ZeroDivisionError("division by zero")


def test_payload_and_metadata_functions_raising_name_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,n\na1,x\n")

    with pytest.raises(SourceRowError, match=r"items\.csv, row 2: payload_from_row raised Zero"):
        read_all(CsvItemSource(path, item_id_from_row=by_id, payload_from_row=broken))
    with pytest.raises(SourceRowError, match=r"items\.csv, row 2: metadata_from_row raised Zero"):
        read_all(CsvItemSource(path, item_id_from_row=by_id, metadata_from_row=broken))


@pytest.mark.parametrize("bad_id", ["", None, 7])
def test_empty_or_non_string_item_id_is_rejected(tmp_path: Path, bad_id: object) -> None:
    path = write(tmp_path / "items.csv", "id\na1\n")

    with pytest.raises(SourceRowError, match=r"row 2: item_id_from_row must return a non-empty"):
        read_all(CsvItemSource(path, item_id_from_row=lambda row: bad_id))  # type: ignore[arg-type,return-value]


def test_metadata_may_not_use_the_lineage_key(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id\na1\n")
    source = CsvItemSource(
        path, item_id_from_row=by_id, metadata_from_row=lambda row: {LINEAGE_KEY: "mine"}
    )

    with pytest.raises(SourceRowError, match=f"row 2, field '{LINEAGE_KEY}': .*reserve"):
        read_all(source)


def test_missing_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"CsvItemSource: file not found: .*nope\.csv"):
        CsvItemSource(tmp_path / "nope.csv", item_id_from_row=by_id)
