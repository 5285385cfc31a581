"""Pause, resume and cancel are durable: whichever process steps the run obeys them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchor import (
    BatchItem,
    BatchJob,
    BatchorError,
    BatchRunner,
    ChunkPolicy,
    LocalArtifactStore,
    OpenAIEnqueueLimitConfig,
    OpenAIProviderConfig,
    PromptParts,
    RunControlState,
    RunStatus,
    SQLiteStorage,
)
from batchor.testing import BatchPace, LocalBatchServer


def job(server: LocalBatchServer, count: int = 40, per_batch: int = 10) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"i{n:03d}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1", api_key="sk-test", base_url=server.base_url
        ),
        chunk_policy=ChunkPolicy(max_requests_per_batch=per_batch),
    )


def in_another_process(tmp_path: Path, code: str) -> str:
    """Run ``code`` with ``run`` bound to the test run, in a fresh interpreter."""
    script = textwrap.dedent(
        f"""
        from batchor import BatchRunner, LocalArtifactStore, SQLiteStorage
        runner = BatchRunner(
            storage=SQLiteStorage(path={str(tmp_path / "runs.sqlite3")!r}),
            artifact_store=LocalArtifactStore({str(tmp_path / "artifacts")!r}),
            api_key="sk-test",
        )
        run = runner.get_run("controlled")
        """
    ) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def file_runner(tmp_path: Path) -> BatchRunner:
    return BatchRunner(
        storage=SQLiteStorage(path=tmp_path / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(tmp_path / "artifacts"),
    )


def test_a_pause_from_another_process_stops_submission_until_resumed(
    file_runner: BatchRunner, server: LocalBatchServer, tmp_path: Path
) -> None:
    run = file_runner.start(job(server), run_id="controlled")
    in_another_process(tmp_path, "run.pause()")

    summary = run.refresh()
    assert summary.control_state is RunControlState.PAUSED
    assert server.batches == {} and summary.pending_items == 40

    in_another_process(tmp_path, "run.resume()")
    assert run.wait().status is RunStatus.COMPLETED


def test_a_paused_run_keeps_collecting_what_is_in_flight(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    limited = job(server)
    run = runner.start(limited)
    run.refresh()  # submits every batch
    run.pause()
    summary = run.wait()
    assert summary.status is RunStatus.COMPLETED and summary.completed_items == 40


def test_cancel_drains_in_flight_batches_and_fails_the_rest(tmp_path: Path) -> None:
    with LocalBatchServer(pace=BatchPace(in_progress=0.5)) as server:
        runner = BatchRunner(storage="memory", artifact_store=LocalArtifactStore(tmp_path))
        limited = job(server)
        config = limited.provider_config.model_copy(
            update={
                "enqueue_limits": OpenAIEnqueueLimitConfig(
                    enqueued_token_limit=200, target_ratio=1.0
                )
            }
        )
        run = runner.start(
            BatchJob(
                items=limited.items,
                build_prompt=limited.build_prompt,
                provider_config=config,
                chunk_policy=limited.chunk_policy,
            )
        )
        first = run.refresh()
        assert 0 < first.submitted_items < 40
        run.cancel()
        summary = run.wait()

    results = run.results()
    completed = [r for r in results if r.status == "completed"]
    cancelled = [r for r in results if r.error is not None and r.error.code == "run_cancelled"]
    assert summary.status is RunStatus.CANCELLED
    assert len(completed) == first.submitted_items
    assert len(completed) + len(cancelled) == 40
    assert len(server.batches) == first.batches_in_flight


def test_remote_cancel_stops_provider_batches_and_keeps_partial_results(tmp_path: Path) -> None:
    with LocalBatchServer(pace=BatchPace(in_progress=30)) as server:
        runner = BatchRunner(storage="memory", artifact_store=LocalArtifactStore(tmp_path))
        run = runner.start(job(server, count=20, per_batch=20))
        run.refresh()
        run.cancel(remote=True)
        summary = run.wait(timeout=60)
        statuses = {batch.status for batch in server.batches.values()}

    assert summary.status is RunStatus.CANCELLED
    assert statuses == {"cancelled"}
    assert {r.error.code for r in run.results() if r.error} == {"run_cancelled"}
    assert len(run.results()) == 20


def test_control_of_a_finished_run_is_refused(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    run = runner.run_and_wait(job(server, count=2))
    with pytest.raises(BatchorError, match="already completed; cannot pause"):
        run.pause()


def test_a_cursor_exports_every_item_exactly_once_while_another_process_runs(
    file_runner: BatchRunner, tmp_path: Path
) -> None:
    with LocalBatchServer(pace=BatchPace(in_progress=0.3)) as server:
        file_runner.start(job(server, count=60, per_batch=10), run_id="controlled")
        driver = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                from batchor import BatchRunner, LocalArtifactStore, SQLiteStorage
                runner = BatchRunner(
                    storage=SQLiteStorage(path={str(tmp_path / "runs.sqlite3")!r}),
                    artifact_store=LocalArtifactStore({str(tmp_path / "artifacts")!r}),
                    api_key="sk-test",
                )
                runner.get_run("controlled").wait(timeout=120)
            """),
            ],
        )
        reader = file_runner.get_run("controlled")
        target = tmp_path / "stream.jsonl"
        cursor, exports = 0, 0
        while True:
            finished = reader.summary().status.is_terminal
            export = reader.export_terminal_results(
                target, after_sequence=cursor, append=True, limit=7
            )
            cursor, exports = export.next_after_sequence, exports + 1
            if finished and export.count == 0:
                break
        assert driver.wait(timeout=120) == 0

    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["item_id"] for line in lines) == sorted(f"i{n:03d}" for n in range(60))
    assert [line["sequence"] for line in lines] == list(range(1, 61))
    assert exports > 2


def test_a_run_whose_ingestion_broke_off_can_still_be_cancelled(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    def broken() -> Iterator[BatchItem]:
        yield from job(server, count=12).items
        raise OSError("the input went away")

    with pytest.raises(OSError, match="went away"):
        runner.start(
            BatchJob(
                items=broken(),
                build_prompt=lambda item: PromptParts(prompt=item.payload),
                provider_config=job(server).provider_config,
                chunk_policy=ChunkPolicy(ingest_slice_size=5),
            ),
            run_id="abandoned",
        )
    run = runner.get_run("abandoned")
    run.cancel()

    assert run.wait().status is RunStatus.CANCELLED
    assert {r.error.code for r in run.results() if r.error} == {"run_cancelled"}
    assert server.batches == {}
