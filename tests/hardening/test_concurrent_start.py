"""Two processes starting the same run at once: the data stays whole, and the one that
steps aside is told another process is ingesting the run, not that its rows repeat.

Two runners (two lease owners, as two processes would be) share one SQLite file;
the first one's input pauses after its first slice is stored, while the second
one starts the same run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    OpenAIProviderConfig,
    PromptParts,
    Run,
    RunStateError,
    SQLiteStorage,
)

ITEMS = 30
SLICE = 10


def job(items: Iterator[BatchItem] | list[BatchItem]) -> BatchJob:
    return BatchJob(
        items=items,
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(model="gpt-4.1", api_key="sk-test"),
        chunk_policy=ChunkPolicy(ingest_slice_size=SLICE),
    )


def rows() -> list[BatchItem]:
    return [BatchItem(f"b{number}", f"text {number}") for number in range(ITEMS)]


def test_a_second_start_of_a_run_being_ingested_says_another_process_is_ingesting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.sqlite3"
    first_slice_stored, second_done = threading.Event(), threading.Event()

    def pausing_input() -> Iterator[BatchItem]:
        for item in rows():
            if item.item_id == f"b{SLICE}":  # asked for once the first slice is stored
                first_slice_stored.set()
                second_done.wait(timeout=30)
            yield item

    first_outcome: list[object] = []

    def first() -> None:
        try:
            first_outcome.append(
                BatchRunner(storage=SQLiteStorage(path=path)).start(
                    job(pausing_input()), run_id="shared"
                )
            )
        except Exception as exc:  # the assertions below say which
            first_outcome.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_slice_stored.wait(timeout=30)
    try:
        with pytest.raises(RunStateError) as second:
            BatchRunner(storage=SQLiteStorage(path=path)).start(job(rows()), run_id="shared")
    finally:
        second_done.set()
        thread.join(timeout=30)

    assert "another process" in str(second.value)
    assert "is ingesting run 'shared' at the same time" in str(second.value)
    assert "duplicate" not in str(second.value)
    (first_run,) = first_outcome
    assert isinstance(first_run, Run), first_run
    summary = BatchRunner(storage=SQLiteStorage(path=path)).get_run("shared").summary()
    assert (summary.total_items, summary.ingest_complete) == (ITEMS, True)
