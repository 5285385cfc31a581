"""A process SIGKILLed while ingesting a source of any kind resumes with
``start(job, run_id=...)``: every row becomes exactly one item, submitted once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_runs_kit import KINDS, expected_ids, rows, write_input
from tests.files_kit import readable_bytes

from batchor import BatchRunner, LocalArtifactStore, RunStatus, SQLiteStorage
from batchor.testing import LocalBatchServer

CHILD = Path(__file__).with_name("source_runs_crash_child.py")
API_KEY = "sk-source-crash-test-do-not-store-77"
ROWS = rows(400)
RUN_ID = "killed_source_run"

pytestmark = pytest.mark.slow


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[LocalBatchServer]:
    with LocalBatchServer(data_dir=tmp_path / "server") as server:
        yield server


def spawn(mode: str, kind: str, data_dir: Path, server: LocalBatchServer) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, kind, str(data_dir), server.base_url, RUN_ID],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=CHILD.parent,
    )


def open_runner(data_dir: Path) -> BatchRunner:
    return BatchRunner(
        storage=SQLiteStorage(path=data_dir / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(data_dir / "artifacts"),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_killed_mid_ingestion_resumes_every_row_exactly_once(
    kind: str, tmp_path: Path, crash_server: LocalBatchServer
) -> None:
    write_input(kind, tmp_path / "input", ROWS)
    child = spawn("start", kind, tmp_path, crash_server)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("stored") and int(line.split()[1]) >= 100:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)

    killed = open_runner(tmp_path).get_run(RUN_ID).summary()
    assert not killed.ingest_complete and 100 <= killed.total_items < len(ROWS)
    assert killed.total_items % 20 == 0, "a slice was stored in part"
    assert crash_server.batches == {}

    out, err = spawn("restart", kind, tmp_path, crash_server).communicate(timeout=120)
    assert "finished completed" in out, err

    run = open_runner(tmp_path).get_run(RUN_ID)
    assert run.status is RunStatus.COMPLETED
    results = run.results()
    assert Counter(result.item_id for result in results) == Counter(expected_ids(kind, ROWS))
    assert all(result.attempts == 1 for result in results)
    (batch,) = crash_server.batches.values()
    assert Counter(batch.custom_ids) == Counter(expected_ids(kind, ROWS))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in readable_bytes(path), f"API key found in {path}"
