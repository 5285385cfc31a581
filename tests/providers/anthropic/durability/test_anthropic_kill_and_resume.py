"""A batchor process driving Anthropic, SIGKILLed at any point, resumes without losing,
duplicating or re-paying for work: every item ends with exactly one result, and the
server ran every request once.

The key case is a kill between the create call and recording the batch's id.
Anthropic batches carry no metadata, so the resumed run must recognise its own batch
among others of the same size (another client's look-alike is created here too).
What it does while such batches are still running is shown step by step, on a
manual clock, in ``test_anthropic_adoption.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest
from tests.files_kit import readable_bytes

from batchor import BatchRunner, LocalArtifactStore, RunStatus, SQLiteStorage
from batchor.testing import BatchPace, LocalBatchServer

CHILD = Path(__file__).with_name("anthropic_crash_child.py")
ITEM_COUNT = 200
MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-crash-test-key-do-not-store-4242"
RUN_ID = "anthropic_crash_run"

pytestmark = pytest.mark.slow


def spawn(mode: str, data_dir: Path, server: LocalBatchServer) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANTHROPIC_")}
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(data_dir), server.url, RUN_ID],
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
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "finished completed" in out


def calls(server: LocalBatchServer, call: str) -> int:
    return server.call_counts[call]


def look_alike(server: LocalBatchServer) -> str:
    """Another client's batch of exactly as many requests, created meanwhile."""
    client = anthropic.Anthropic(api_key="sk-ant-someone-else", base_url=server.url)
    params = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    requests = [{"custom_id": f"theirs-{n}", "params": params} for n in range(ITEM_COUNT)]
    return client.messages.batches.create(requests=requests).id  # type: ignore[arg-type]


def assert_exactly_once(data_dir: Path, server: LocalBatchServer, *, others: int = 0) -> None:
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
    assert all((result.attempts, result.resubmissions) == (1, 0) for result in results)
    counters = server.counters
    assert counters.batches_created[MODEL] == 1 + others, "the same work was submitted twice"
    assert counters.requests_executed[MODEL] == ITEM_COUNT * (1 + others)
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in readable_bytes(path), f"API key found in {path}"


@contextlib.contextmanager
def crash_server(data_dir: Path, seconds_per_batch: float = 0.0) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(data_dir=data_dir, pace=BatchPace(in_progress=seconds_per_batch))
    with server:
        yield server
    server.faults.clear()  # release calls still held, once nothing can answer them


@pytest.fixture
def instant_server(tmp_path: Path) -> Iterator[LocalBatchServer]:
    with crash_server(tmp_path / "server") as server:
        yield server


def test_killed_mid_ingestion_resumes_from_what_was_stored(
    tmp_path: Path, instant_server: LocalBatchServer
) -> None:
    child = spawn("start", tmp_path, instant_server)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("stored") and int(line.split()[1]) >= 60:
            break
    kill(child)
    assert instant_server.anthropic.batches == {}

    finish("restart", tmp_path, instant_server)
    assert_exactly_once(tmp_path, instant_server)


def test_killed_after_create_before_recording_adopts_its_own_batch_not_a_look_alike(
    tmp_path: Path, instant_server: LocalBatchServer
) -> None:
    instant_server.faults.stall("POST", "/messages/batches", 60, after_processing=True)
    child = spawn("start", tmp_path, instant_server)
    wait_until(lambda: len(instant_server.anthropic.batches) == 1, child, "the batch to exist")
    theirs = look_alike(instant_server)
    kill(child)
    instant_server.faults.clear()

    finish("resume", tmp_path, instant_server)
    assert_exactly_once(tmp_path, instant_server, others=1)
    assert list(instant_server.anthropic.batches) == [theirs]  # ours collected and deleted
    assert calls(instant_server, "POST /v1/messages/batches") == 2  # ours, then theirs


def test_killed_while_collecting_results_records_them_once(tmp_path: Path) -> None:
    # batches run for half a second: time to stall the download of this one
    with crash_server(tmp_path / "server", seconds_per_batch=0.5) as server:
        child = spawn("start", tmp_path, server)
        wait_until(lambda: len(server.anthropic.batches) == 1, child, "the batch to exist")
        (batch_id,) = server.anthropic.batches
        server.faults.stall("GET", f"/messages/batches/{batch_id}/results", 60)
        results_call = "GET /v1/messages/batches/{id}/results"
        wait_until(lambda: calls(server, results_call) >= 1, child, "the download")
        kill(child)
        server.faults.clear()

        finish("resume", tmp_path, server)
        assert_exactly_once(tmp_path, server)
        assert server.anthropic.batches == {}
