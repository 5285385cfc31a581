"""``run_worker`` on every storage backend: it drives started runs to the end, stops
when asked, leaves runs leased by a live process alone until the lease expires,
and takes over the runs of a dead local process at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ConfigurationError,
    LocalArtifactStore,
    OpenAIProviderConfig,
    PostgresStorage,
    PromptParts,
    RunStatus,
    RunSummary,
    SQLiteStorage,
    Storage,
    WorkerReport,
    run_worker,
)
from batchor.testing import BatchPace, LocalBatchServer

API_KEY = "sk-worker-loop-key-0123456789"
CHILD = Path(__file__).with_name("worker_child.py")


def job(server: LocalBatchServer, count: int = 30, prefix: str = "item") -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"{prefix}-{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key=API_KEY, base_url=server.base_url, max_retries=0
        ),
    )


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def start_runs(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer, count: int
) -> list[str]:
    runner = BatchRunner(storage, artifacts)
    return [runner.start(job(server, prefix=f"run{n}")).run_id for n in range(count)]


def statuses(storage: Storage, artifacts: LocalArtifactStore) -> dict[str, RunStatus]:
    return {run.run_id: run.status for run in BatchRunner(storage, artifacts).list_runs()}


def worker_in_thread(
    storage: Storage, artifacts: LocalArtifactStore, stop: threading.Event, **options: Any
) -> tuple[threading.Thread, list[WorkerReport]]:
    reports: list[WorkerReport] = []

    def work() -> None:
        reports.append(
            run_worker(
                storage, artifacts, api_key=API_KEY, poll_interval=0.02, stop_event=stop, **options
            )
        )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, reports


def test_a_worker_drives_every_started_run_to_the_end_then_stops_when_idle(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    run_ids = start_runs(storage, artifacts, server, 3)

    report = run_worker(storage, artifacts, api_key=API_KEY, poll_interval=0.02, until_idle=True)

    assert report.stop_reason == "idle"
    assert sorted(report.finished_run_ids) == sorted(run_ids)
    assert report.errors == 0
    assert set(statuses(storage, artifacts).values()) == {RunStatus.COMPLETED}
    assert storage.claims.lease_owners() == set()


def test_a_worker_claiming_several_runs_at_a_time_drives_them_all(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    run_ids = start_runs(storage, artifacts, server, 5)

    report = run_worker(
        storage,
        artifacts,
        api_key=API_KEY,
        poll_interval=0.02,
        max_runs_per_tick=3,
        until_idle=True,
    )

    assert sorted(report.finished_run_ids) == sorted(run_ids)
    assert storage.claims.lease_owners() == set()


def test_a_worker_with_nothing_to_do_returns_at_once_when_idle(
    storage: Storage, artifacts: LocalArtifactStore
) -> None:
    report = run_worker(storage, artifacts, until_idle=True)

    assert report.stop_reason == "idle" and report.steps == 0


def test_stop_event_ends_the_worker_and_its_leases_are_released(
    storage: Storage, artifacts: LocalArtifactStore
) -> None:
    with LocalBatchServer(pace=BatchPace(in_progress=60)) as slow_server:
        start_runs(storage, artifacts, slow_server, 2)
        stop = threading.Event()
        thread, reports = worker_in_thread(storage, artifacts, stop)
        while not any(run.batches_in_flight for run in summaries(storage, artifacts)):
            time.sleep(0.02)

        stop.set()
        thread.join(timeout=30)

    assert not thread.is_alive()
    assert reports[0].stop_reason == "stop_event"
    assert storage.claims.lease_owners() == set()
    assert set(statuses(storage, artifacts).values()) == {RunStatus.RUNNING}


def summaries(storage: Storage, artifacts: LocalArtifactStore) -> list[RunSummary]:
    return [run.summary() for run in BatchRunner(storage, artifacts).list_runs()]


def test_a_run_leased_by_a_live_process_elsewhere_waits_for_its_lease_to_expire(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    (run_id,) = start_runs(storage, artifacts, server, 1)
    record = storage.runs.get(run_id)
    assert record is not None
    elsewhere = "another-host:4242:0badc0de"
    storage.runs.try_acquire_lease(record.run_pk, elsewhere, now=time.time(), ttl=3600)
    stop = threading.Event()
    thread, reports = worker_in_thread(storage, artifacts, stop, until_idle=True)
    time.sleep(0.3)
    assert server.batches == {} and storage.claims.lease_owners() == {elsewhere}

    # The other machine stops renewing: its lease runs out.
    storage.runs.try_acquire_lease(record.run_pk, elsewhere, now=time.time() - 7200, ttl=1)
    thread.join(timeout=30)

    assert reports[0].stop_reason == "idle"
    assert statuses(storage, artifacts)[run_id] is RunStatus.COMPLETED


def test_the_runs_of_a_dead_process_on_this_host_are_taken_over_at_once(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    (run_id,) = start_runs(storage, artifacts, server, 1)
    record = storage.runs.get(run_id)
    assert record is not None
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    storage.runs.try_acquire_lease(
        record.run_pk, f"{socket.gethostname()}:{exited.pid}:deadbeef", now=time.time(), ttl=3600
    )

    report = run_worker(storage, artifacts, api_key=API_KEY, poll_interval=0.02, until_idle=True)

    assert report.finished_run_ids == (run_id,)


def test_a_paused_run_with_nothing_in_flight_does_not_keep_the_worker_busy(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    paused_id, running_id = start_runs(storage, artifacts, server, 2)
    BatchRunner(storage, artifacts).get_run(paused_id).pause()

    report = run_worker(storage, artifacts, api_key=API_KEY, poll_interval=0.02, until_idle=True)

    assert report.finished_run_ids == (running_id,)
    assert statuses(storage, artifacts) == {
        paused_id: RunStatus.RUNNING,
        running_id: RunStatus.COMPLETED,
    }


def test_claims_give_concurrent_workers_disjoint_runs(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    start_runs(storage, artifacts, server, 4)
    now = time.time()

    first = storage.claims.claim("worker-a", now=now, ttl=60, limit=2)
    second = storage.claims.claim("worker-b", now=now, ttl=60, limit=3)
    third = storage.claims.claim("worker-c", now=now, ttl=60, limit=3)

    assert len(first) == 2 and len(second) == 2 and third == []
    assert {r.run_pk for r in first}.isdisjoint({r.run_pk for r in second})
    assert {r.lease_owner for r in first} == {"worker-a"}
    assert storage.claims.claim("worker-c", now=now + 61, ttl=60, limit=9) != []


def test_claims_after_a_cursor_go_round_the_runs_in_order(
    storage: Storage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    start_runs(storage, artifacts, server, 3)
    now = time.time()
    first = storage.claims.claim("worker", now=now, ttl=60, limit=1)
    after = storage.claims.claim("worker", now=now, ttl=60, limit=5, after_run_pk=first[0].run_pk)

    assert [r.run_pk for r in after] == sorted(r.run_pk for r in after)
    assert all(r.run_pk > first[0].run_pk for r in after) and len(after) == 2


@pytest.mark.postgres
def test_claims_skip_runs_another_transaction_has_locked_instead_of_waiting(
    postgres_storage: PostgresStorage, artifacts: LocalArtifactStore, server: LocalBatchServer
) -> None:
    start_runs(postgres_storage, artifacts, server, 3)
    first_pk = min(run.run_pk for run in postgres_storage.runs.list_runs())
    with postgres_storage.engine.connect() as other:
        other.exec_driver_sql("BEGIN")
        other.exec_driver_sql(
            f'SELECT 1 FROM "{postgres_storage.schema}".runs WHERE run_pk = {first_pk} FOR UPDATE'
        )
        claimed = postgres_storage.claims.claim("worker", now=time.time(), ttl=60, limit=3)
        other.exec_driver_sql("ROLLBACK")

    assert len(claimed) == 2 and first_pk not in {r.run_pk for r in claimed}


def test_worker_settings_are_checked(storage: Storage, artifacts: LocalArtifactStore) -> None:
    with pytest.raises(ConfigurationError, match="max_runs_per_tick"):
        run_worker(storage, artifacts, max_runs_per_tick=0)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        run_worker(storage, artifacts, poll_interval=0)
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        run_worker(storage, artifacts, lease_ttl=0)


@pytest.mark.postgres
def test_a_worker_on_postgres_needs_the_artifact_store_the_runs_use(
    postgres_storage: PostgresStorage,
) -> None:
    with pytest.raises(ConfigurationError, match="artifact_store"):
        run_worker(postgres_storage, until_idle=True)


@pytest.mark.slow
def test_sigterm_lets_a_worker_process_finish_its_step_and_exit_cleanly(
    tmp_path: Path, artifacts: LocalArtifactStore
) -> None:
    storage = SQLiteStorage(path=tmp_path / "runs.sqlite3")
    with LocalBatchServer(pace=BatchPace(in_progress=60)) as slow_server:
        start_runs(storage, artifacts, slow_server, 2)
        env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
        env["OPENAI_API_KEY"] = API_KEY
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(artifacts.root), "--sqlite", str(storage.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        while len(slow_server.batches) < 2:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.05)

        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)

    assert child.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["stop_reason"] == "signal"
    assert storage.claims.lease_owners() == set()
