"""Resuming with another input or another job is refused with a
``SourceMismatchError`` that says what changed, and the run is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from source_runs_kit import (
    KINDS,
    RowRecorder,
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
    CompositeItemSource,
    OpenAIProviderConfig,
    RunStatus,
    SourceMismatchError,
    SourceRowError,
)

ROWS = rows(30)
EDITED = [*ROWS[:3], {"id": "r003", "text": "edited"}, *ROWS[4:]]


@pytest.fixture
def memory_runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def interrupted_run(
    kind: str, directory: Path, runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    """A run ``r1`` that stored 20 of the 30 rows before its input broke at row 25."""
    write_input(kind, directory, ROWS)
    with pytest.raises(SourceRowError):
        runner.start(
            make_job(make_source(kind, directory, RowRecorder("r025")), provider_config), "r1"
        )


CHANGED_BEFORE_CHECKPOINT = {
    "csv": r"items\.csv changed within the 20 rows already ingested",
    "jsonl": r"items\.jsonl changed within the 20 rows already ingested",
    "parquet": r"items\.parquet changed after 20 rows were ingested; ParquetItemSource cannot "
    r"tell which rows changed, so the file must be unchanged to resume",
    "composite": r"child 0 \(0-items-a, .*items-a\.csv\) changed, and every item it yielded "
    r"is already stored",
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_row_changed_before_the_checkpoint_is_a_mismatch(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    interrupted_run(kind, tmp_path, memory_runner, provider_config)
    write_input(kind, tmp_path, EDITED)

    with pytest.raises(SourceMismatchError) as raised:
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "r1")

    message = str(raised.value)
    assert "run 'r1' was started with a different source or job" in message
    assert "content_sha256" in message
    assert "Use the original input and job settings to resume, or a new run_id" in message
    assert raised.match(CHANGED_BEFORE_CHECKPOINT[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_a_changed_file_of_a_fully_ingested_run_is_a_mismatch(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    write_input(kind, tmp_path, ROWS)
    memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "done")
    write_input(kind, tmp_path, [*ROWS[:-1], {"id": "r029", "text": "the last row, edited"}])

    with pytest.raises(SourceMismatchError, match="content_sha256"):
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "done")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_rows_appended_after_ingestion_finished_are_a_mismatch(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    write_input(kind, tmp_path, ROWS)
    memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "done")
    write_input(kind, tmp_path, [*ROWS, *rows(5, prefix="new")])

    with pytest.raises(
        SourceMismatchError,
        match="has rows after the 30 ingested, but the run has finished ingesting",
    ):
        memory_runner.start(make_job(make_source(kind, tmp_path), provider_config), "done")


def test_reordered_composite_children_are_a_mismatch(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    interrupted_run("composite", tmp_path, memory_runner, provider_config)
    first, second = (file_source(path) for path in input_paths("composite", tmp_path))

    with pytest.raises(SourceMismatchError) as raised:
        memory_runner.start(make_job(CompositeItemSource([second, first]), provider_config), "r1")

    assert raised.match("source children: ")
    assert raised.match(
        "the same children are given in a different order; the order decides the item ids"
    )


def test_a_different_file_is_a_mismatch(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    interrupted_run("jsonl", tmp_path, memory_runner, provider_config)
    other = write_file(tmp_path / "other" / "items.jsonl", ROWS)

    with pytest.raises(SourceMismatchError) as raised:
        memory_runner.start(make_job(file_source(other), provider_config), "r1")

    assert (
        f"JsonlItemSource is not the input the run was started with "
        f"(source_ref '{tmp_path / 'items.jsonl'}' -> '{other}')"
    ) in str(raised.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_changed_model_is_a_mismatch(
    kind: str,
    tmp_path: Path,
    memory_runner: BatchRunner,
    provider_config: OpenAIProviderConfig,
) -> None:
    interrupted_run(kind, tmp_path, memory_runner, provider_config)
    other_model = provider_config.model_copy(update={"model": "gpt-4.1-mini"})

    with pytest.raises(
        SourceMismatchError, match=r'job config provider\.model: "gpt-4\.1" -> "gpt-4\.1-mini"'
    ):
        memory_runner.start(make_job(make_source(kind, tmp_path), other_model), "r1")


def test_a_plain_iterable_cannot_resume_a_source_run(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    interrupted_run("csv", tmp_path, memory_runner, provider_config)
    items = [BatchItem(row["id"], {"text": row["text"]}) for row in ROWS]

    with pytest.raises(
        SourceMismatchError,
        match="source kind: the run was started with a checkpointed source, now a plain iterable",
    ):
        memory_runner.start(make_job(items, provider_config), "r1")


def test_a_refused_resume_leaves_the_run_as_it_was(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    interrupted_run("jsonl", tmp_path, memory_runner, provider_config)
    write_input("jsonl", tmp_path, EDITED)
    with pytest.raises(SourceMismatchError):
        memory_runner.start(make_job(make_source("jsonl", tmp_path), provider_config), "r1")
    write_input("jsonl", tmp_path, ROWS)

    run = memory_runner.start(make_job(make_source("jsonl", tmp_path), provider_config), "r1")

    assert run.wait().status is RunStatus.COMPLETED
    assert sorted(result.item_id for result in run.results()) == [row["id"] for row in ROWS]


def test_another_kind_of_source_is_a_mismatch(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    interrupted_run("composite", tmp_path, memory_runner, provider_config)
    first = file_source(input_paths("composite", tmp_path)[0])

    with pytest.raises(
        SourceMismatchError,
        match="the run was started with a 'composite' source, not CsvItemSource",
    ):
        memory_runner.start(make_job(first, provider_config), "r1")
