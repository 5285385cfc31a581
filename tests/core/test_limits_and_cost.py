"""No item stranded, spend under control: refusals re-plan, unexecuted work is free
to resubmit, cost limits pause a run, ``plan`` estimates before anything is sent,
and provider-side files are deleted once collected."""

from __future__ import annotations

import pytest

from batchor import (
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    ConfigurationError,
    ModelPrice,
    OpenAIProviderConfig,
    PromptParts,
    RetryPolicy,
    RunControlState,
    RunStatus,
)
from batchor.testing import LocalBatchServer

API_KEY = "sk-test-limits"


class FastForwardClock:
    """The engine's clock, where sleeping (retry backoffs, polling) takes no real time."""

    def __init__(self) -> None:
        self.now_value = 1_800_000_000.0

    def now(self) -> float:
        return self.now_value

    def sleep(self, seconds: float) -> None:
        self.now_value += seconds


def tickets(count: int, words: int = 30) -> list[BatchItem]:
    text = " ".join(["word"] * words)
    return [BatchItem(f"t{number}", f"ticket {number}: {text}") for number in range(count)]


def job(server: LocalBatchServer, items: list[BatchItem], **options: object) -> BatchJob:
    provider = OpenAIProviderConfig(model="gpt-4.1-mini", api_key=API_KEY, base_url=server.base_url)
    return BatchJob(
        items=items,
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=options.pop("provider_config", provider),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def refused(server: LocalBatchServer, code: str) -> int:
    return sum(
        1
        for batch in server.batches.values()
        if batch.status == "failed" and any(error.code == code for error in batch.errors)
    )


@pytest.fixture
def runner() -> BatchRunner:
    return BatchRunner(storage="memory", clock=FastForwardClock())


def test_an_unconfigured_run_learns_the_enqueued_token_limit_from_the_refusal(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer(default_token_limit=50_000) as server:
        run = runner.run_and_wait(job(server, tickets(3_000)))
        refusals = refused(server, "token_limit_exceeded")

    summary = run.summary()
    assert summary.completed_items == 3_000
    assert 1 <= refusals <= 2
    assert summary.learned_limits == {"enqueued_tokens": 50_000}


def test_a_per_batch_request_limit_is_read_from_the_refusal_and_kept_for_later_runs(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer(max_requests_per_batch=30) as server:
        first = runner.run_and_wait(job(server, tickets(100)))
        refusals_first = refused(server, "too_many_tasks")
        second = runner.run_and_wait(job(server, tickets(70)))
        refusals_total = refused(server, "too_many_tasks")

    assert first.summary().completed_items == 100
    assert all(result.attempts == 1 for result in first.results())
    assert refusals_first == 1 and refusals_total == 1  # the second run planned within it
    assert second.summary().learned_limits == {"requests_per_batch": 30}
    assert second.summary().batches_total == 3


def test_a_run_through_a_bad_day_completes_every_item_with_the_default_policy(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer() as server:
        server.faults.http_error("*", "/v1", 429, times=None, every=7, retry_after=0.001)
        server.faults.fail_request_share(0.05)
        server.faults.expire_every_batch(3, completed_fraction=0.5)
        server.faults.malform_output_share(0.02, kind="missing_line")
        run = runner.run_and_wait(
            job(
                server,
                tickets(5_000, words=4),
                chunk_policy=ChunkPolicy(max_requests_per_batch=500),
            )
        )

    summary = run.summary()
    results = run.results()
    assert (summary.status, summary.completed_items) == (RunStatus.COMPLETED, 5_000)
    assert RetryPolicy() == run.config.retry_policy
    assert any(result.resubmissions for result in results)  # expired and missing: free
    assert any(result.attempts > 1 for result in results)  # failed lines: retried
    assert all(result.attempts <= RetryPolicy().max_attempts for result in results)


def test_a_provider_that_never_runs_anything_ends_in_explained_failures(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer() as server:
        server.faults.expire_every_batch(1, completed_fraction=0.0)
        run = runner.run_and_wait(
            job(server, tickets(3), retry_policy=RetryPolicy(max_resubmissions=2))
        )

    failures = {result.error.code for result in run.results() if result.error}
    assert run.status is RunStatus.COMPLETED_WITH_FAILURES
    assert failures == {"batch_expired"}
    assert all(result.resubmissions == 3 and result.attempts == 0 for result in run.results())
    assert "never executed" in run.results()[0].error.message  # type: ignore[union-attr]


def test_a_cost_limit_pauses_the_run_before_the_batch_that_would_cross_it(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer() as server:
        items = tickets(30)
        planned = runner.plan(
            job(server, items, chunk_policy=ChunkPolicy(max_requests_per_batch=10))
        )
        assert planned.estimated_cost_usd is not None and planned.batch_count == 3
        per_batch = planned.estimated_cost_usd / 3
        run = runner.start(
            job(
                server,
                items,
                chunk_policy=ChunkPolicy(max_requests_per_batch=10),
                cost_limit_usd=per_batch * 1.01,
            )
        )
        for _ in range(5):
            run.refresh()
        paused = run.summary()

        run.set_cost_limit(planned.estimated_cost_usd * 10)
        done = run.wait()

    assert paused.control_state is RunControlState.PAUSED
    assert paused.control_reason == "cost_limit"
    assert paused.completed_items == 10 and paused.batches_in_flight == 0
    assert paused.cost_usd is not None and 0 < paused.cost_usd <= per_batch * 1.01
    assert "cost limit" in (paused.last_error or "")
    assert (done.status, done.completed_items) == (RunStatus.COMPLETED, 30)


def test_cost_limits_and_prices_are_checked_when_given(runner: BatchRunner) -> None:
    with LocalBatchServer() as server:
        with pytest.raises(ConfigurationError, match="cost_limit_usd must be a positive"):
            job(server, tickets(1), cost_limit_usd=0)
        with pytest.raises(ConfigurationError, match="input"):
            ModelPrice(input=-1, output=1)
        unknown = OpenAIProviderConfig(model="my-model", api_key=API_KEY, base_url=server.base_url)
        with pytest.raises(ConfigurationError, match="needs a price for model 'my-model'"):
            runner.start(job(server, tickets(1), provider_config=unknown, cost_limit_usd=1.0))


def test_plan_reports_the_estimate_without_storing_or_sending_anything(
    runner: BatchRunner,
) -> None:
    with LocalBatchServer() as server:
        planned = runner.plan(
            job(server, tickets(120), chunk_policy=ChunkPolicy(max_requests_per_batch=50))
        )
        calls = sum(server.call_counts.values())

    assert (planned.item_count, planned.batch_count) == (120, 3)
    assert planned.estimated_input_tokens > 120 * 30
    assert planned.estimated_cost_usd is not None and planned.estimated_cost_usd > 0
    assert (
        planned.first_request_line is not None and '"custom_id":"t0"' in planned.first_request_line
    )
    assert runner.list_runs() == [] and calls == 0


def test_provider_files_are_deleted_once_collected_unless_kept(runner: BatchRunner) -> None:
    with LocalBatchServer() as server:
        runner.run_and_wait(job(server, tickets(5)))
        deleted = dict(server.counters.files_deleted)
        runner.run_and_wait(
            job(server, tickets(5), artifact_policy=ArtifactPolicy(delete_provider_files=False))
        )
        deleted_after = dict(server.counters.files_deleted)

    assert deleted == {"batch": 1, "batch_output": 1}
    assert deleted_after == deleted
