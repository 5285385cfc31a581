"""A batchor process SIGKILLed at any point resumes without losing, duplicating or
re-paying for work: every item ends with exactly one terminal result and the
server never sees the same work submitted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.files_kit import readable_bytes

from batchor import BatchRunner, LocalArtifactStore, RunStatus, SQLiteStorage
from batchor.testing import LocalBatchServer

CHILD = Path(__file__).with_name("crash_child.py")
ITEM_COUNT = 400
API_KEY = "sk-crash-test-key-do-not-store-4242"
RUN_ID = "crash_run"

pytestmark = pytest.mark.slow


def spawn(
    mode: str, data_dir: Path, server: LocalBatchServer, *extra: str
) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(data_dir), server.base_url, RUN_ID, *extra],
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


def finish(mode: str, data_dir: Path, server: LocalBatchServer, *extra: str) -> None:
    child = spawn(mode, data_dir, server, *extra)
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err
    assert "finished completed" in out


def assert_exactly_once(data_dir: Path, server: LocalBatchServer) -> None:
    runner = BatchRunner(
        storage=SQLiteStorage(path=data_dir / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(data_dir / "artifacts"),
    )
    run = runner.get_run(RUN_ID)
    assert run.status is RunStatus.COMPLETED
    results = run.results()
    ids = Counter(result.item_id for result in results)
    assert len(ids) == ITEM_COUNT and set(ids.values()) == {1}
    assert sorted(result.sequence for result in results) == list(range(1, ITEM_COUNT + 1))
    assert all(result.attempts == 1 for result in results)
    submitted = Counter(cid for batch in server.batches.values() for cid in batch.custom_ids)
    assert len(server.batches) == 1, "the same work was submitted as a second batch"
    assert set(submitted.values()) == {1} and len(submitted) == ITEM_COUNT
    assert_key_never_stored(data_dir)


def assert_key_never_stored(data_dir: Path) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in readable_bytes(path), f"API key found in {path}"


def call_count(server: LocalBatchServer, prefix: str) -> int:
    return sum(count for call, count in server.call_counts.items() if call.startswith(prefix))


@pytest.fixture
def crash_server(tmp_path: Path) -> LocalBatchServer:
    with LocalBatchServer(data_dir=tmp_path / "server") as server:
        yield server  # type: ignore[misc]
        server.faults.clear()


@pytest.mark.parametrize("source", ["iterable", "jsonl"])
def test_killed_mid_ingestion_resumes_from_what_was_stored(
    tmp_path: Path, crash_server: LocalBatchServer, source: str
) -> None:
    child = spawn("start", tmp_path, crash_server, "--source", source)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("stored") and int(line.split()[1]) >= 100:
            break
    kill(child)
    assert crash_server.batches == {}

    finish("restart", tmp_path, crash_server, "--source", source)
    assert_exactly_once(tmp_path, crash_server)


def test_killed_after_upload_before_create_submits_once(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("POST", "/batches", 60)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: call_count(crash_server, "POST /v1/batches") >= 1, child, "the create call")
    kill(child)
    crash_server.faults.clear()

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)


def test_killed_after_create_before_recording_adopts_the_batch(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("POST", "/batches", 60, after_processing=True)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: len(crash_server.batches) == 1, child, "the batch to exist")
    kill(child)
    crash_server.faults.clear()

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)


def test_killed_while_collecting_results_records_them_once(
    tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    crash_server.faults.stall("GET", "/files/", 60)
    child = spawn("start", tmp_path, crash_server)
    wait_until(lambda: call_count(crash_server, "GET /v1/files/") >= 1, child, "the download")
    kill(child)
    crash_server.faults.clear()

    finish("resume", tmp_path, crash_server)
    assert_exactly_once(tmp_path, crash_server)
