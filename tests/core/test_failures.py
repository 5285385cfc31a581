"""Every kind of provider failure ends in a retry or a clearly explained item failure."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    ItemStatus,
    OpenAIProviderConfig,
    PromptParts,
    RetryPolicy,
    RunControlState,
    RunStatus,
)
from batchor.testing import LocalBatchServer

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_seconds=0, backoff_max_seconds=0)


class Label(BaseModel):
    label: str


def items(count: int) -> list[BatchItem]:
    return [BatchItem(item_id=f"item{n}", payload=f"text {n}") for n in range(count)]


def job(config: OpenAIProviderConfig, count: int = 6, **kwargs: object) -> BatchJob:
    return BatchJob(
        items=items(count),
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=config,
        retry_policy=kwargs.pop("retry_policy", FAST_RETRY),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def by_id(run_results: list) -> dict:  # type: ignore[type-arg]
    return {result.item_id: result for result in run_results}


def test_retryable_request_errors_are_retried_until_they_succeed(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.fail_requests(["item1", "item2"], status_code=500, code="server_error")
    run = runner.run_and_wait(job(provider_config))

    results = by_id(run.results())
    assert run.status is RunStatus.COMPLETED
    assert results["item1"].attempts == 2 and results["item1"].status is ItemStatus.COMPLETED
    assert results["item0"].attempts == 1
    assert len(server.batches) == 2


def test_permanent_request_errors_fail_the_item_with_the_provider_reason(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.fail_requests(
        ["item3"], status_code=400, code="invalid_prompt", message="prompt flagged", times=None
    )
    run = runner.run_and_wait(job(provider_config))

    failed = by_id(run.results())["item3"]
    assert run.status is RunStatus.COMPLETED_WITH_FAILURES
    assert failed.status is ItemStatus.FAILED and failed.attempts == 1
    assert failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.retryable) == (
        "invalid_prompt",
        "prompt flagged",
        False,
    )


def test_items_give_up_after_max_attempts(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.fail_requests(["item0"], status_code=503, code="server_error", times=None)
    run = runner.run_and_wait(
        job(provider_config, retry_policy=RetryPolicy(max_attempts=2, backoff_initial_seconds=0))
    )

    failed = by_id(run.results())["item0"]
    assert failed.status is ItemStatus.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error.retryable


def test_an_expired_batch_keeps_its_partial_results_and_resubmits_the_rest_for_free(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.expire_next_batch(completed_fraction=0.5)
    run = runner.run_and_wait(job(provider_config, count=10))

    results = run.results()
    assert run.status is RunStatus.COMPLETED
    assert all(result.attempts == 1 for result in results)  # each executed once
    assert sorted(result.resubmissions for result in results) == [0] * 5 + [1] * 5


def test_a_failed_batch_is_resubmitted_without_spending_an_attempt(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.fail_next_batch(code="invalid_request", message="injected failure")
    run = runner.run_and_wait(job(provider_config))

    assert run.status is RunStatus.COMPLETED
    assert all((result.attempts, result.resubmissions) == (1, 1) for result in run.results())


def test_token_limit_exceeded_is_retried_without_spending_an_attempt(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.fail_next_batch(
        code="token_limit_exceeded", message="Enqueued token limit reached"
    )
    quick = job(
        provider_config, retry_policy=RetryPolicy(max_attempts=1, backoff_initial_seconds=0)
    )
    run = runner.run_and_wait(quick)

    assert run.status is RunStatus.COMPLETED
    assert all((result.attempts, result.resubmissions) == (1, 0) for result in run.results())
    # the refused batch is planned again within half of what it held
    assert len(server.batches) > 2


def test_an_unreadable_output_line_counts_as_missing_and_is_resubmitted(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.malform_output(["item2"], kind="invalid_json_line")
    run = runner.run_and_wait(job(provider_config))

    assert run.status is RunStatus.COMPLETED
    item2 = by_id(run.results())["item2"]
    assert (item2.attempts, item2.resubmissions) == (1, 1)


def test_a_reply_that_does_not_validate_fails_with_the_validation_error(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    server.faults.malform_output(["item1"], kind="invalid_reply_text", times=None)
    run = runner.run_and_wait(
        job(
            provider_config,
            structured_output=Label,
            retry_policy=RetryPolicy(max_attempts=2, backoff_initial_seconds=0),
        )
    )

    failed = by_id(run.results())["item1"]
    assert failed.status is ItemStatus.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error.code == "invalid_output"
    assert "does not validate as Label" in failed.error.message
    assert failed.output is None and failed.output_text is not None


@pytest.mark.parametrize("status", [429, 500])
def test_transient_http_errors_on_any_endpoint_are_survived(
    runner: BatchRunner, server: LocalBatchServer, status: int
) -> None:
    config = OpenAIProviderConfig(
        model="gpt-4.1", api_key="sk-test", base_url=server.base_url, max_retries=0
    )
    for path in ("/files", "/batches"):
        server.faults.http_error("*", path, status, times=1, retry_after=0)
    run = runner.run_and_wait(job(config))

    assert run.status is RunStatus.COMPLETED
    assert all(result.attempts == 1 for result in run.results())


def test_quota_errors_pause_the_run_with_the_reason(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    config = OpenAIProviderConfig(
        model="gpt-4.1", api_key="sk-test", base_url=server.base_url, max_retries=0
    )
    run = runner.start(job(config))
    server.faults.http_error(
        "POST", "/files", 429, message="You exceeded your current quota", code="insufficient_quota"
    )
    summary = run.refresh()

    assert summary.control_state is RunControlState.PAUSED
    assert summary.control_reason is not None and "insufficient_quota" in summary.control_reason
    assert server.batches == {}
    run.resume()
    assert run.wait().status is RunStatus.COMPLETED


def test_a_batch_the_provider_no_longer_reports_holds_up_only_itself(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    """A batch whose poll is refused (404: deleted, or not this key's) stays in flight
    with the reason on the run; the run's other batches are still collected, and
    nothing is submitted again. Once it can be polled, the run finishes."""
    run = runner.start(
        job(provider_config, count=6, chunk_policy=ChunkPolicy(max_requests_per_batch=2))
    )
    run.refresh()
    first, *others = list(server.batches)
    assert len(others) == 2
    server.faults.http_error("GET", f"/batches/{first}", 404, times=None, message="No batch found")
    for _ in range(3):
        summary = run.refresh()

    assert summary.completed_items == 4 and summary.batches_in_flight == 1
    assert summary.last_error is not None
    assert f"batch 1 ({first}) cannot be polled" in summary.last_error
    assert "No batch found" in summary.last_error
    assert len(server.batches) == 3
    server.faults.clear()
    assert run.wait(timeout=30).status is RunStatus.COMPLETED
    assert len(server.batches) == 3 and run.summary().last_error is None
