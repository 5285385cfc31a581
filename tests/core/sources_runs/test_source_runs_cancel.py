"""``cancel()`` stops ingestion: a cancelled run reads no more of its input, and
ends ``cancelled`` with every stored item failed as ``run_cancelled``."""

from __future__ import annotations

from pathlib import Path

import pytest
from source_runs_kit import RowRecorder, make_job, make_source, rows, write_input

from batchor import BatchRunner, OpenAIProviderConfig, RunStatus, SourceRowError

ROWS = rows(30)


@pytest.fixture
def memory_runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def test_a_half_ingested_run_cancelled_reads_no_more_of_its_input(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    write_input("csv", tmp_path, ROWS)
    with pytest.raises(SourceRowError):
        memory_runner.start(
            make_job(make_source("csv", tmp_path, RowRecorder("r025")), provider_config), "c1"
        )
    memory_runner.get_run("c1").cancel()

    reader = RowRecorder()
    run = memory_runner.start(make_job(make_source("csv", tmp_path, reader), provider_config), "c1")

    assert reader.seen == []
    assert run.wait().status is RunStatus.CANCELLED
    results = run.results()
    assert [result.item_id for result in results] == [row["id"] for row in ROWS[:20]]
    assert {result.error.code for result in results if result.error} == {"run_cancelled"}


def test_a_cancel_from_elsewhere_stops_a_running_ingestion_after_the_slice(
    tmp_path: Path, memory_runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    write_input("jsonl", tmp_path, ROWS)

    def cancel_after_first_slice(stored: int) -> None:
        if stored == 10:
            BatchRunner(memory_runner.storage, memory_runner.artifact_store).get_run("c2").cancel()

    run = memory_runner.start(
        make_job(make_source("jsonl", tmp_path), provider_config),
        "c2",
        progress=cancel_after_first_slice,
    )

    assert run.summary().total_items == 10
    assert run.wait().status is RunStatus.CANCELLED
    assert len(run.results()) == 10
