"""Three worker processes drive five runs on one PostgreSQL database under one shared
enqueued-token limit; one worker is SIGKILLed in the middle of creating a batch.

Every item ends terminal exactly once, no work reaches the server twice, and the
server never holds more enqueued tokens than the limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    LocalArtifactStore,
    OpenAIEnqueueLimitConfig,
    OpenAIProviderConfig,
    PostgresStorage,
    PromptParts,
    RunStatus,
)
from batchor.storage.records import BatchState
from batchor.testing import BatchPace, LocalBatchServer
from batchor.testing import BatchRecord as ServerBatch

CHILD = Path(__file__).with_name("worker_child.py")
API_KEY = "sk-worker-test-key-0123456789"
MODEL = "gpt-4.1-mini"
TOKEN_LIMIT = 3_000
# The whole limit as budget: batchor's estimate runs about a third above the server's
# count, so the workers fill the server to about 3/4 of the limit, and any double
# reservation would push it over (and the server would fail the batch).
LIMITS = OpenAIEnqueueLimitConfig(
    enqueued_token_limit=TOKEN_LIMIT, target_ratio=1.0, max_batch_enqueued_tokens=800
)
RUN_COUNT = 5
ITEMS_PER_RUN = 80
WORKER_COUNT = 3

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def job(run_number: int, server: LocalBatchServer) -> BatchJob:
    items = [
        BatchItem(
            item_id=f"r{run_number}-{n:03d}",
            payload={"text": f"document {run_number}-{n}: " + "lorem ipsum dolor " * 12},
        )
        for n in range(ITEMS_PER_RUN)
    ]
    return BatchJob(
        items=items,
        build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
        provider_config=OpenAIProviderConfig(
            model=MODEL,
            api_key=API_KEY,
            base_url=server.base_url,
            enqueue_limits=LIMITS,
            max_retries=0,
        ),
    )


def spawn_worker(storage: PostgresStorage, artifacts: Path) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = API_KEY
    dsn = storage.engine.url.render_as_string(hide_password=False)
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(artifacts), "--postgres", dsn, storage.schema],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stalled_create_owner(
    storage: PostgresStorage, server: LocalBatchServer, workers: list[subprocess.Popen[str]]
) -> str:
    """The lease owner of the run whose batch the server created but whose create call
    is being held: its batch stays ``creating`` locally while the server has it."""
    deadline = time.monotonic() + 30
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        created = {
            (batch.metadata or {}).get("batchor_batch_key") for batch in server.batches.values()
        }
        for record in storage.runs.list_runs(active_only=True):
            for batch in storage.batches.for_run(record.run_pk):
                if batch.state is BatchState.CREATING and batch.local_key in created:
                    if seen.get(batch.local_key) == record.lease_owner:
                        assert record.lease_owner is not None
                        return record.lease_owner
                    seen[batch.local_key] = record.lease_owner or ""
        time.sleep(0.3)
    raise AssertionError("no worker got stuck in the stalled create call")


def peak_estimated_tokens(storage: PostgresStorage, server_batches: list[ServerBatch]) -> int:
    """The most tokens, by batchor's own estimates, the server ever held at once.

    A server batch is enqueued from its creation to its completion, a span inside
    the time batchor holds that batch's budget reservation, so this can only
    exceed the budget if the workers together reserved more than it."""
    estimates = {
        batch.local_key: batch.estimated_tokens
        for record in storage.runs.list_runs()
        for batch in storage.batches.for_run(record.run_pk)
    }
    events: list[tuple[float, int]] = []
    for batch in server_batches:
        estimate = estimates[(batch.metadata or {})["batchor_batch_key"]]
        assert batch.completed_time is not None
        events += [(batch.created_time, estimate), (batch.completed_time, -estimate)]
    peak = enqueued = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        enqueued += change
        peak = max(peak, enqueued)
    return peak


def test_workers_share_runs_and_budget_and_survive_a_sigkill(
    postgres_storage: PostgresStorage, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    pace = BatchPace(validating=0.1, in_progress=0.2, finalizing=0.1)
    with LocalBatchServer(pace=pace, token_limits={MODEL: TOKEN_LIMIT}) as server:
        runner = BatchRunner(postgres_storage, LocalArtifactStore(artifacts))
        run_ids = [runner.start(job(n, server)).run_id for n in range(RUN_COUNT)]

        workers = [spawn_worker(postgres_storage, artifacts) for _ in range(WORKER_COUNT)]
        while len(server.batches) < 8:
            assert all(worker.poll() is None for worker in workers)
            time.sleep(0.05)
        server.faults.stall("POST", "/batches", 60, after_processing=True)
        victim_owner = stalled_create_owner(postgres_storage, server, workers)
        victim = next(w for w in workers if f":{w.pid}:" in victim_owner)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        server.faults.clear()

        reports = []
        for worker in workers:
            if worker is victim:
                continue
            out, err = worker.communicate(timeout=50)
            assert worker.returncode == 0, err
            reports.append(json.loads(out.splitlines()[-1]))
        server_batches = list(server.batches.values())
        max_enqueued = server.max_enqueued_tokens_seen[MODEL]

    for run_number, run_id in enumerate(run_ids):
        run = runner.get_run(run_id)
        assert run.status is RunStatus.COMPLETED
        results = run.results()
        counts = Counter(result.item_id for result in results)
        assert set(counts) == {f"r{run_number}-{n:03d}" for n in range(ITEMS_PER_RUN)}
        assert set(counts.values()) == {1}
        assert all(result.attempts == 1 for result in results), "an item was paid for twice"

    submitted: dict[str, Counter[str]] = defaultdict(Counter)
    for batch in server_batches:
        assert batch.status == "completed", batch.errors
        submitted[(batch.metadata or {})["batchor_run_id"]].update(batch.custom_ids)
    assert set(submitted) == set(run_ids)
    assert all(set(ids.values()) == {1} for ids in submitted.values()), "a duplicate batch"
    assert TOKEN_LIMIT // 2 < max_enqueued <= TOKEN_LIMIT
    assert peak_estimated_tokens(postgres_storage, server_batches) <= LIMITS.enqueued_token_budget
    assert max_enqueued > max(batch.tokens for batch in server_batches), "never concurrent"
    assert all(report["steps"] > 0 and report["stop_reason"] == "idle" for report in reports)
    assert postgres_storage.claims.lease_owners() == set()
