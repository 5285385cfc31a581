"""On its worst day the Gemini API rate-limits, fails, expires batches, drops and
garbles result lines; every item still ends with exactly one result or an
explained failure, and work the provider never ran costs no attempt."""

from __future__ import annotations

from typing import Any

import pytest
from gemini_kit import FAST_RETRY, GEMINI_KEY, MODEL

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    GeminiProviderConfig,
    ItemStatus,
    PromptParts,
    ProviderAuthenticationError,
    RefusalKind,
    RetryPolicy,
    RunStatus,
)
from batchor.testing import BatchPace, LocalBatchServer

CREATE = "POST /gemini/{version}/models/{model}:batchGenerateContent"
DOWNLOAD = "GET /gemini/{version}/files/{id}:download"


def config_for(server: LocalBatchServer, **settings: Any) -> GeminiProviderConfig:
    options: dict[str, Any] = {"api_key": GEMINI_KEY, "max_retries": 0, **settings}
    return GeminiProviderConfig(model=MODEL, base_url=server.gemini_url, **options)


def job(config: GeminiProviderConfig, count: int = 6, **settings: Any) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"item{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=config,
        retry_policy=settings.pop("retry_policy", FAST_RETRY),
        **settings,
    )


def by_id(run: Any) -> dict[str, Any]:
    return {result.item_id: result for result in run.results()}


@pytest.fixture
def runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def test_rate_limits_and_outages_on_calls_are_waited_out(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.faults.http_error("POST", "/gemini/upload/", 503)
    server.faults.http_error("GET", "/gemini/v1beta/batches/", 429, times=2, retry_after=1)
    run = runner.run_and_wait(job(config_for(server)))

    assert run.status is RunStatus.COMPLETED
    assert {result.attempts for result in run.results()} == {1}
    assert server.counters.batches_created == {MODEL: 1}
    assert server.counters.requests_executed == {MODEL: 6}


@pytest.mark.batchor_server(token_limits={MODEL: 30})
def test_a_create_over_the_enqueued_token_limit_is_replanned_within_the_stated_limit(
    runner: BatchRunner, batchor_server: LocalBatchServer
) -> None:
    run = runner.run_and_wait(job(config_for(batchor_server), count=10))

    assert run.status is RunStatus.COMPLETED
    assert {(r.attempts, r.status) for r in run.results()} == {(1, ItemStatus.COMPLETED)}
    assert run.summary().learned_limits == {RefusalKind.ENQUEUED_TOKENS.value: 30}
    assert batchor_server.call_counts[CREATE] > batchor_server.counters.batches_created[MODEL]
    assert batchor_server.max_enqueued_tokens_seen[MODEL] <= 30


def test_a_batch_over_the_request_limit_is_replanned_smaller(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.gemini.store.max_requests_per_batch = 4
    run = runner.run_and_wait(job(config_for(server), count=10))

    assert run.status is RunStatus.COMPLETED
    assert run.summary().learned_limits == {RefusalKind.REQUESTS_PER_BATCH.value: 4}
    assert server.counters.batches_created == {MODEL: 3}


def test_a_file_over_the_size_limit_is_refused_at_upload_and_replanned(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.gemini.store.max_file_bytes = 400
    run = runner.run_and_wait(job(config_for(server), count=10))

    assert run.status is RunStatus.COMPLETED
    assert run.summary().learned_limits == {RefusalKind.BATCH_BYTES.value: 400}
    assert server.counters.requests_executed == {MODEL: 10}


def test_request_errors_are_retried_or_explained(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.faults.fail_requests(["item1"], status_code=503)
    server.faults.fail_requests(["item3"], status_code=400, message="bad request", times=None)
    run = runner.run_and_wait(job(config_for(server)))

    results = by_id(run)
    assert run.status is RunStatus.COMPLETED_WITH_FAILURES
    assert (results["item1"].status, results["item1"].attempts) == (ItemStatus.COMPLETED, 2)
    failed = results["item3"]
    assert (failed.status, failed.attempts) == (ItemStatus.FAILED, 1)
    assert failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.retryable) == (
        "INVALID_ARGUMENT",
        "bad request",
        False,
    )


def test_an_expired_batch_returns_nothing_and_its_items_are_resubmitted_free(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.faults.expire_next_batch(completed_fraction=0.5)
    run = runner.run_and_wait(job(config_for(server)))

    assert run.status is RunStatus.COMPLETED
    assert {result.attempts for result in run.results()} == {1}
    assert server.counters.batches_created == {MODEL: 2}
    assert server.counters.requests_executed == {MODEL: 6}, "the expired batch ran nothing"


def test_missing_unknown_and_broken_result_lines_lose_nothing(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.faults.malform_output(["item0"], "missing_line")
    server.faults.malform_output(["item2"], "unknown_id")
    server.faults.malform_output(["item5"], "invalid_json_line")  # the file ends mid-line
    run = runner.run_and_wait(job(config_for(server)))

    assert run.status is RunStatus.COMPLETED
    assert len(run.results()) == 6
    assert {result.attempts for result in run.results()} == {1}
    assert server.counters.batches_created == {MODEL: 2}


def test_a_failed_batch_explains_why(runner: BatchRunner, server: LocalBatchServer) -> None:
    server.faults.fail_next_batch(message="The batch could not be processed.")
    no_resubmission = RetryPolicy(max_resubmissions=0)
    run = runner.run_and_wait(job(config_for(server), count=2, retry_policy=no_resubmission))

    assert run.status is RunStatus.COMPLETED_WITH_FAILURES
    errors = {(r.error.code, r.error.message.split(" (")[0]) for r in run.results() if r.error}
    assert errors == {("INTERNAL", "The batch could not be processed.")}


def test_a_failed_download_is_retried_by_the_adapter(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    server.faults.http_error("GET", "/gemini/v1beta/files/", 503)
    run = runner.start(job(config_for(server, max_retries=1)))
    run.refresh()  # submits
    summary = run.refresh()  # polls, downloads (twice), collects

    assert summary.completed_items == 6
    assert server.call_counts[DOWNLOAD] == 2


def test_a_wrong_key_stops_the_run_without_showing_the_key(runner: BatchRunner) -> None:
    wrong = "AIzaSyWrong-key-0123456789abcdef"
    with LocalBatchServer(api_key=GEMINI_KEY) as server:
        run = runner.start(job(config_for(server, api_key=wrong)))
        with pytest.raises(ProviderAuthenticationError, match="API key not valid") as raised:
            run.refresh()
    assert wrong not in str(raised.value) and "GEMINI_API_KEY" in str(raised.value)


def test_an_unreachable_server_is_retried_later_and_named(runner: BatchRunner) -> None:
    with LocalBatchServer() as server:
        config = config_for(server)
        url = server.gemini_url
    run = runner.start(job(config))
    summary = run.refresh()

    assert summary.status is RunStatus.RUNNING and summary.completed_items == 0
    assert summary.last_error is not None
    assert url.removesuffix("/gemini") in summary.last_error
    assert GEMINI_KEY not in summary.last_error


@pytest.mark.batchor_server(pace=BatchPace(in_progress=60))
def test_cancelling_remotely_cancels_the_gemini_batch(
    runner: BatchRunner, batchor_server: LocalBatchServer
) -> None:
    run = runner.start(job(config_for(batchor_server)))
    run.refresh()
    run.cancel(remote=True)
    summary = run.wait(poll_interval=0.05)

    assert summary.status is RunStatus.CANCELLED
    assert batchor_server.call_counts["POST /gemini/{version}/batches/{id}:cancel"] == 1
    assert {result.error.code for result in run.results() if result.error} == {"run_cancelled"}
