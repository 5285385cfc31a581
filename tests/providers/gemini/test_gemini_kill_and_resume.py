"""A batchor process driving a Gemini run, SIGKILLed at any point, resumes without
losing, duplicating or re-paying for work: every item ends with exactly one result,
and the server ran every request once, in one batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.files_kit import readable_bytes

from batchor import BatchRunner, LocalArtifactStore, RunStatus, SQLiteStorage
from batchor.testing import LocalBatchServer

CHILD = Path(__file__).with_name("gemini_crash_child.py")
ITEM_COUNT = 300
API_KEY = "AIzaSyCrash-test-key-do-not-store-4242"
MODEL = "gemini-2.5-flash-lite"
RUN_ID = "gemini_crash_run"
CREATE = "POST /gemini/{version}/models/{model}:batchGenerateContent"
DOWNLOAD = "GET /gemini/{version}/files/{id}:download"

pytestmark = pytest.mark.slow


def spawn(mode: str, data_dir: Path, server: LocalBatchServer) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GEMINI_", "GOOGLE_"))
    }
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(data_dir), server.gemini_url, RUN_ID],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_until(condition: Callable[[], bool], child: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if child.poll() is not None:
            raise AssertionError(
                f"child exited before {what}: {child.stderr.read() if child.stderr else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)


def finish(mode: str, data_dir: Path, server: LocalBatchServer) -> None:
    child = spawn(mode, data_dir, server)
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err
    assert "finished completed" in out


def assert_exactly_once(data_dir: Path, server: LocalBatchServer) -> None:
    run = BatchRunner(
        storage=SQLiteStorage(path=data_dir / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(data_dir / "artifacts"),
    ).get_run(RUN_ID)
    assert run.status is RunStatus.COMPLETED
    results = run.results()
    ids = Counter(result.item_id for result in results)
    assert len(ids) == ITEM_COUNT and set(ids.values()) == {1}
    assert sorted(result.sequence for result in results) == list(range(1, ITEM_COUNT + 1))
    assert all(result.attempts == 1 for result in results)
    counters = server.counters
    assert counters.batches_created == {MODEL: 1}, "the same work was submitted twice"
    assert counters.requests_executed == {MODEL: ITEM_COUNT}
    assert server.gemini.store.batches == {}, "collected batches are deleted"
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in readable_bytes(path), f"API key found in {path}"


def calls(server: LocalBatchServer, key: str) -> int:
    return server.call_counts[key]


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[LocalBatchServer]:
    with LocalBatchServer(data_dir=tmp_path / "server") as server:
        yield server
        server.faults.clear()


def test_killed_mid_ingestion_resumes_from_what_was_stored(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    child = spawn("start", tmp_path, crash_server)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("stored") and int(line.split()[1]) >= 100:
            break
    kill(child)
    assert crash_server.counters.batches_created == {}

    finish("restart", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)


def test_killed_after_upload_before_create_submits_once(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("POST", "/gemini/v1beta/models/", 60)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: calls(crash_server, CREATE) >= 1, child, "the create call")
    kill(child)
    crash_server.faults.clear()

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)


def test_killed_after_create_before_recording_adopts_the_batch_by_display_name(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("POST", "/gemini/v1beta/models/", 60, after_processing=True)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: len(crash_server.gemini.store.batches) == 1, child, "the batch")
    kill(child)
    crash_server.faults.clear()
    (batch,) = crash_server.gemini.store.batches.values()
    assert batch.display_name == f"{RUN_ID}/000001"

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)
    assert calls(crash_server, CREATE) == 1


def test_killed_while_collecting_results_records_them_once(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("GET", "/gemini/v1beta/files/", 60)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: calls(crash_server, DOWNLOAD) >= 1, child, "the download")
    kill(child)
    crash_server.faults.clear()

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)
