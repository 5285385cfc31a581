"""A bad row stops ingestion with an error naming the file and the row; what was
stored stays, and the run resumes once the row is fixed.

Fixing a CSV or JSONL file at or after the reported row resumes the same run:
every byte before the stored checkpoint is checked to be the one already read.
A Parquet file cannot be checked that way, so a Parquet run resumes after the
row function is fixed, or starts again under a new run id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from source_runs_kit import (
    RowRecorder,
    expected_ids,
    file_source,
    input_paths,
    make_job,
    make_source,
    rows,
    write_file,
    write_input,
)

from batchor import (
    BatchItem,
    BatchRunner,
    CsvItemSource,
    DuplicateItemIdError,
    OpenAIProviderConfig,
    ParquetItemSource,
    RunStatus,
    SourceMismatchError,
    SourceRowError,
)

ROWS = rows(30)
BROKEN = 25  # the index of the bad row; slices of 10 rows: 20 rows are stored before it


@pytest.fixture
def memory_runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def break_row(path: Path, index: int) -> None:
    """Make the ``index``-th data row of a CSV or JSONL file malformed."""
    lines = path.read_bytes().splitlines(keepends=True)
    line = index + 1 if path.suffix == ".csv" else index
    ending = b"\r\n" if lines[line].endswith(b"\r\n") else b"\n"
    extra = b',"extra"' if path.suffix == ".csv" else b","
    lines[line] = lines[line].removesuffix(ending) + extra + ending
    path.write_bytes(b"".join(lines))


def assert_stored(runner: BatchRunner, run_id: str, count: int) -> None:
    summary = runner.get_run(run_id).summary()
    assert (summary.total_items, summary.ingest_complete) == (count, False)


MALFORMED = {
    "csv": ("items.csv", BROKEN + 2, "expected 2 fields (as in the header), got 3"),
    "jsonl": ("items.jsonl", BROKEN + 1, "invalid JSON: Extra data at column 45"),
    "composite": ("items-b.jsonl", BROKEN - 15 + 1, "invalid JSON: Extra data at column 45"),
}


@pytest.mark.parametrize("kind", ["csv", "jsonl", "composite"])
def test_a_malformed_line_names_file_and_row_and_resumes_once_fixed(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    write_input(kind, tmp_path, ROWS)
    name, row_number, problem = MALFORMED[kind]
    break_row(input_paths(kind, tmp_path)[-1], BROKEN if kind != "composite" else BROKEN - 15)

    with pytest.raises(SourceRowError) as raised:
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "fixme")
    assert str(raised.value) == f"{tmp_path / name}, row {row_number}: {problem}"
    assert (raised.value.source_ref, raised.value.row_number) == (
        str(tmp_path / name),
        row_number,
    )
    assert_stored(memory_runner, "fixme", 20)

    write_input(kind, tmp_path, ROWS)
    reader = RowRecorder()
    run = memory_runner.start(
        make_job(make_source(kind, tmp_path, reader), provider_config), "fixme"
    )

    assert reader.seen == [row["id"] for row in ROWS[20:]]
    assert run.wait().status is RunStatus.COMPLETED
    assert sorted(result.item_id for result in run.results()) == sorted(expected_ids(kind, ROWS))


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_rows_appended_while_ingestion_is_incomplete_are_ingested(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    write_input(kind, tmp_path, ROWS)
    break_row(input_paths(kind, tmp_path)[0], BROKEN)
    with pytest.raises(SourceRowError):
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "grows")
    more = [*ROWS, *rows(5, prefix="late")]
    write_input(kind, tmp_path, more)

    run = memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "grows")

    assert run.summary().total_items == 35
    run.wait()
    assert sorted(result.item_id for result in run.results()) == sorted(row["id"] for row in more)


def test_a_missing_column_names_the_column_and_what_the_row_has(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    path = tmp_path / "items.csv"
    path.write_text("key,text\nr000,hello\n", encoding="utf-8")

    with pytest.raises(SourceRowError) as raised:
        memory_runner.start(make_job(file_source(path), provider_config), "columns")

    assert str(raised.value) == (
        f"{path}, row 2, field 'id': item_id_from_row raised KeyError: the row has no column "
        "'id' (columns: 'key', 'text')"
    )
    assert_stored(memory_runner, "columns", 0)


def test_a_row_missing_its_id_key_mid_file_keeps_the_slices_before(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    path = write_file(tmp_path / "items.jsonl", ROWS)
    lines = path.read_text().splitlines(keepends=True)
    lines[BROKEN] = json.dumps({"text": "no id here"}) + "\n"
    path.write_text("".join(lines))

    with pytest.raises(SourceRowError, match=r"items\.jsonl, row 26, field 'id': .*KeyError"):
        memory_runner.start(make_job(file_source(path), provider_config), "keys")
    assert_stored(memory_runner, "keys", 20)


def test_an_id_function_that_raises_names_the_row(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    path = write_file(tmp_path / "items.csv", ROWS)

    def numeric_id(row: dict[str, str]) -> str:
        return str(int(row["id"].removeprefix("r")) if row["id"] != "r025" else int(row["id"]))

    numbered = CsvItemSource(path, item_id_from_row=numeric_id, payload_from_row=lambda row: row)

    with pytest.raises(SourceRowError) as raised:
        memory_runner.start(make_job(numbered, provider_config), "ids")

    assert str(raised.value) == (
        f"{path}, row 27: item_id_from_row raised ValueError: invalid literal for int() with "
        "base 10: 'r025'"
    )
    assert isinstance(raised.value.__cause__, ValueError)
    assert_stored(memory_runner, "ids", 20)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_an_empty_id_names_the_row(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    bad = [*ROWS[:BROKEN], {"id": "", "text": "no id"}, *ROWS[BROKEN + 1 :]]
    (path,) = write_input(kind, tmp_path, bad)
    row_number = BROKEN + 2 if kind == "csv" else BROKEN + 1

    with pytest.raises(SourceRowError) as raised:
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "empty")

    assert str(raised.value) == (
        f"{path}, row {row_number}: item_id_from_row must return a non-empty string, got ''"
    )
    assert_stored(memory_runner, "empty", 20)


def test_a_fixed_parquet_file_is_refused_but_a_fixed_row_function_resumes(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    bad = [*ROWS[:BROKEN], {"id": "", "text": "no id"}, *ROWS[BROKEN + 1 :]]
    (path,) = write_input("parquet", tmp_path, bad)
    with pytest.raises(SourceRowError):
        memory_runner.start(make_job(make_source("parquet", tmp_path), provider_config), "pq")

    write_input("parquet", tmp_path, ROWS)
    with pytest.raises(SourceMismatchError, match="the file must be unchanged to resume"):
        memory_runner.start(make_job(make_source("parquet", tmp_path), provider_config), "pq")

    write_input("parquet", tmp_path, bad)
    tolerant = ParquetItemSource(
        path,
        item_id_from_row=lambda row: row["id"] or f"missing-{row['text']}",
        payload_from_row=lambda row: {"text": row["text"]},
        columns=["id", "text"],
    )
    run = memory_runner.start(make_job(tolerant, provider_config), "pq")
    assert run.summary().total_items == 30
    run.wait()
    assert "missing-no id" in {result.item_id for result in run.results()}


def test_a_new_run_id_starts_over_from_a_fixed_parquet_file(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    bad = [*ROWS[:BROKEN], {"id": "", "text": "no id"}, *ROWS[BROKEN + 1 :]]
    write_input("parquet", tmp_path, bad)
    with pytest.raises(SourceRowError):
        memory_runner.start(make_job(make_source("parquet", tmp_path), provider_config), "pq")
    write_input("parquet", tmp_path, ROWS)

    run = memory_runner.run_and_wait(make_job(make_source("parquet", tmp_path), provider_config))

    assert run.run_id != "pq"
    assert sorted(result.item_id for result in run.results()) == [row["id"] for row in ROWS]


def test_a_duplicate_of_a_stored_id_names_both_rows(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    duplicated = [*ROWS[:BROKEN], {"id": "r003", "text": "again"}, *ROWS[BROKEN + 1 :]]
    path = write_file(tmp_path / "items.csv", duplicated)

    with pytest.raises(DuplicateItemIdError) as raised:
        memory_runner.start(make_job(file_source(path), provider_config), "dupes")

    assert str(raised.value) == (
        f"duplicate item_id 'r003': input position 25 ({path}, source_item_index 25) repeats "
        f"the item already stored at input position 3 ({path}, source_item_index 3) in run "
        "'dupes'; item ids must be unique within a run"
    )
    assert_stored(memory_runner, "dupes", 20)

    write_file(path, ROWS)
    run = memory_runner.start(make_job(file_source(path), provider_config), "dupes")
    assert run.wait().completed_items == 30


def test_a_duplicate_within_one_slice_names_both_rows(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    duplicated = [*ROWS[:BROKEN], {"id": "r021", "text": "again"}, *ROWS[BROKEN + 1 :]]
    path = write_file(tmp_path / "items.jsonl", duplicated)

    with pytest.raises(DuplicateItemIdError) as raised:
        memory_runner.start(make_job(file_source(path), provider_config), "dupes")

    assert str(raised.value) == (
        f"duplicate item_id 'r021': input position 25 ({path}, source_item_index 25) repeats "
        f"input position 21 ({path}, source_item_index 21); item ids must be unique within a run"
    )
    assert_stored(memory_runner, "dupes", 20)


def test_the_same_row_ids_in_two_composite_children_coexist(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    write_file(tmp_path / "items-a.csv", ROWS[:5])
    write_file(tmp_path / "items-b.jsonl", ROWS[:5])

    run = memory_runner.run_and_wait(make_job(make_source("composite", tmp_path), provider_config))

    ids = sorted(result.item_id for result in run.results())
    assert ids == sorted(
        f"{namespace}:{row['id']}" for namespace in ("0-items-a", "1-items-b") for row in ROWS[:5]
    )


def test_a_plain_iterable_repeating_an_id_of_an_earlier_slice_is_an_error(
    memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    items = [BatchItem(row["id"], {"text": row["text"]}) for row in ROWS]
    items[BROKEN] = BatchItem("r003", {"text": "again"})

    with pytest.raises(DuplicateItemIdError) as raised:
        memory_runner.start(make_job(items, provider_config), "plain")

    assert str(raised.value) == (
        "duplicate item_id 'r003': input position 25 repeats the item already stored at item "
        "index 3 in run 'plain'; item ids must be unique within a run"
    )
    assert_stored(memory_runner, "plain", 20)
