"""An interrupted ingestion resumes from the stored checkpoint, for every source kind
and every storage: each row is read once after the checkpoint, every item ends
with exactly one result, and each result carries its lineage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from source_runs_kit import (
    KINDS,
    RowRecorder,
    expected_ids,
    expected_lineage,
    make_job,
    make_source,
    rows,
    write_input,
)

from batchor import (
    LINEAGE_KEY,
    BatchRunner,
    JsonlItemSource,
    OpenAIProviderConfig,
    RunStatus,
    SourceRowError,
)

ROWS = rows(30)


@pytest.mark.parametrize("kind", KINDS)
def test_an_interrupted_ingestion_resumes_from_the_stored_checkpoint(
    kind: str, tmp_path: Path, runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    write_input(kind, tmp_path, ROWS)
    broken = RowRecorder(break_at="r025")
    with pytest.raises(SourceRowError, match="the input broke at r025"):
        runner.start(make_job(make_source(kind, tmp_path, broken), provider_config), run_id="r1")
    stored = runner.get_run("r1").summary()
    assert (stored.total_items, stored.ingest_complete) == (20, False)

    reader = RowRecorder()
    run = runner.start(make_job(make_source(kind, tmp_path, reader), provider_config), run_id="r1")

    assert reader.seen == [row["id"] for row in ROWS[20:]]
    assert run.summary().total_items == 30
    assert run.wait().status is RunStatus.COMPLETED
    results = run.results()
    assert Counter(result.item_id for result in results) == Counter(expected_ids(kind, ROWS))
    assert [result.sequence for result in results] == list(range(1, 31))
    lineage = expected_lineage(kind, tmp_path, ROWS)
    assert {result.item_id: result.metadata[LINEAGE_KEY] for result in results} == lineage


@pytest.mark.parametrize("kind", KINDS)
def test_starting_a_fully_ingested_run_again_reads_nothing(
    kind: str, tmp_path: Path, provider_config: OpenAIProviderConfig
) -> None:
    runner = BatchRunner(storage="memory")
    write_input(kind, tmp_path, ROWS)
    first = runner.start(make_job(make_source(kind, tmp_path), provider_config), run_id="again")

    reader = RowRecorder()
    again = runner.start(make_job(make_source(kind, tmp_path, reader), provider_config), "again")

    assert reader.seen == []
    assert again.run_id == first.run_id
    assert again.summary().total_items == 30
    assert again.wait().completed_items == 30


def test_lineage_survives_unusual_file_names_and_ids(
    tmp_path: Path, provider_config: OpenAIProviderConfig
) -> None:
    path = tmp_path / 'données "export" ✓.jsonl'
    path.write_text(
        '{"id": "quote\\"d", "text": "a"}\n{"id": "naïve\\nline", "text": "b"}\n',
        encoding="utf-8",
    )
    source = JsonlItemSource(
        path, item_id_from_row=lambda row: row["id"], payload_from_row=lambda row: row
    )

    run = BatchRunner(storage="memory").run_and_wait(make_job(source, provider_config))

    assert [result.metadata[LINEAGE_KEY] for result in run.results()] == [
        {
            "source_ref": str(path),
            "partition_id": None,
            "source_item_index": index,
            "source_primary_key": item_id,
            "source_namespace": None,
        }
        for index, item_id in enumerate(['quote"d', "naïve\nline"])
    ]
