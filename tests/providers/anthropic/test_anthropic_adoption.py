"""How a run finds the batch a failed create call may have made, step by step.

Anthropic batches carry no metadata: a run recognises its own only by the tag its
custom ids carry, which the API shows once the batch has ended. So after a create
whose outcome is unknown the run waits for every batch of the same size made since
(never creating a second one meanwhile), adopts its own, or creates it once no
candidate is left. Time is a manual clock on the server: batches end when the test
says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from anthropic_kit import API_KEY, FAST_RETRY, MODEL

from batchor import (
    AnthropicProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    PromptParts,
    RunStatus,
)
from batchor.testing import BatchPace, LocalBatchServer, ManualClock

BATCH_SECONDS = 100


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(tmp_path: Path, clock: ManualClock) -> Iterator[LocalBatchServer]:
    pace = BatchPace(in_progress=BATCH_SECONDS)
    with LocalBatchServer(clock=clock, pace=pace, data_dir=tmp_path / "server") as running:
        yield running
        running.faults.clear()


def job(server: LocalBatchServer, count: int = 5, **settings: object) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"item{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=AnthropicProviderConfig(
            model=MODEL, api_key=API_KEY, base_url=server.url, poll_interval=0.02, **settings
        ),
        retry_policy=FAST_RETRY,
    )


def look_alike(server: LocalBatchServer, count: int = 5) -> str:
    """Another client's batch of the same size, made after the run's create call."""
    client = anthropic.Anthropic(api_key="sk-ant-someone-else", base_url=server.url)
    params = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    requests = [{"custom_id": f"theirs-{n}", "params": params} for n in range(count)]
    return client.messages.batches.create(requests=requests).id  # type: ignore[arg-type]


def creates(server: LocalBatchServer) -> int:
    return server.call_counts["POST /v1/messages/batches"]


def test_a_create_whose_answer_was_lost_waits_for_the_batch_and_adopts_it(
    server: LocalBatchServer, clock: ManualClock
) -> None:
    server.faults.stall("POST", "/messages/batches", 2, after_processing=True)
    run = BatchRunner(storage="memory").start(job(server, request_timeout=0.2))

    first = run.refresh()  # the create times out: did it make the batch?
    assert first.last_error is not None and "APITimeoutError" in first.last_error
    waiting = run.refresh()  # it did, but the batch shows whose it is only once it ends
    assert waiting.last_error is not None and "waits for them" in waiting.last_error
    assert (creates(server), len(server.anthropic.batches)) == (1, 1)

    clock.advance(BATCH_SECONDS)
    summary = run.wait(timeout=20)

    assert summary.status is RunStatus.COMPLETED
    assert creates(server) == 1
    assert all((r.attempts, r.resubmissions) == (1, 0) for r in run.results())


def test_a_create_that_never_reached_the_api_is_made_once_look_alikes_prove_foreign(
    server: LocalBatchServer, clock: ManualClock
) -> None:
    server.faults.http_error("POST", "/messages/batches", 500, times=1)
    run = BatchRunner(storage="memory").start(job(server))
    run.refresh()  # the create fails with a 500: it may or may not have made the batch
    theirs = look_alike(server)

    waiting = run.refresh()
    assert waiting.last_error is not None and theirs in waiting.last_error
    assert set(server.anthropic.batches) == {theirs}

    clock.advance(BATCH_SECONDS)  # theirs ends: its custom ids carry no tag of ours
    run.refresh()
    assert creates(server) == 3  # the failed one, theirs, and ours at last
    clock.advance(BATCH_SECONDS)
    assert run.wait(timeout=20).status is RunStatus.COMPLETED
    assert theirs in server.anthropic.batches  # never adopted, never deleted


def test_batches_made_before_the_create_call_are_never_candidates(
    server: LocalBatchServer, clock: ManualClock
) -> None:
    earlier = BatchRunner(storage="memory").start(job(server))
    earlier.refresh()  # a batch of the same size, still running
    server.faults.http_error("POST", "/messages/batches", 500, times=1)
    run = BatchRunner(storage="memory").start(job(server))
    run.refresh()  # its create fails

    run.refresh()  # nothing was made since its create call: it creates at once
    assert creates(server) == 3
    assert run.summary().last_error is None
    clock.advance(BATCH_SECONDS)
    assert run.wait(timeout=20).status is RunStatus.COMPLETED
    assert earlier.wait(timeout=20).status is RunStatus.COMPLETED
