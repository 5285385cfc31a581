"""Runs on Anthropic survive what its Message Batches API does on a bad day: every item
ends with one result or an explained failure, and what the API never ran is
resubmitted without spending an attempt."""

from __future__ import annotations

from pathlib import Path

import pytest
from anthropic_kit import API_KEY, FAST_RETRY, MODEL
from pydantic import BaseModel

from batchor import (
    AnthropicEnqueueLimitConfig,
    AnthropicProviderConfig,
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    BatchRunner,
    ItemStatus,
    PromptParts,
    ProviderAuthenticationError,
    RetryPolicy,
    Run,
    RunStatus,
)
from batchor.providers.anthropic import batch_tag
from batchor.testing import AnthropicLimits, BatchPace, LocalBatchServer, ManualClock


class Label(BaseModel):
    label: str


def job(config: AnthropicProviderConfig, count: int = 10, **kwargs: object) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"item{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=config,
        retry_policy=kwargs.pop("retry_policy", FAST_RETRY),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def test_transient_http_errors_on_every_call_are_survived(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    config = AnthropicProviderConfig(
        model=MODEL, api_key=API_KEY, base_url=server.url, max_retries=0, poll_interval=0.02
    )
    server.faults.http_error("GET", "/messages/batches", 429, times=2, retry_after=0.01)
    server.faults.http_error("POST", "/messages/batches", 529, times=1)
    server.faults.http_error("POST", "/messages/batches", 429, times=1, retry_after=0.01)
    run = runner.run_and_wait(job(config))

    assert run.status is RunStatus.COMPLETED
    assert all(result.attempts == 1 for result in run.results())
    assert server.counters.batches_created[MODEL] == 1


def test_errored_requests_are_retried_by_their_error_type(
    runner: BatchRunner, server: LocalBatchServer, config: AnthropicProviderConfig
) -> None:
    run_id = "errored_requests"
    tag = batch_tag(f"{run_id}/000001")
    server.faults.fail_requests([f"{tag}-item1"], status_code=529, code="overloaded_error")
    server.faults.fail_requests(
        [f"{tag}-item2"], status_code=400, message="prompt is too long", code="invalid_request"
    )
    run = runner.run_and_wait(job(config), run_id=run_id)

    results = {result.item_id: result for result in run.results()}
    assert run.status is RunStatus.COMPLETED_WITH_FAILURES
    assert (results["item1"].status, results["item1"].attempts) == (ItemStatus.COMPLETED, 2)
    failed = results["item2"]
    assert failed.status is ItemStatus.FAILED and failed.attempts == 1
    assert failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.retryable) == (
        "invalid_request_error",
        "prompt is too long",
        False,
    )


def test_an_expired_batch_resubmits_what_it_did_not_run_without_spending_an_attempt(
    runner: BatchRunner, server: LocalBatchServer, config: AnthropicProviderConfig
) -> None:
    server.faults.expire_next_batch(completed_fraction=0.4)
    run = runner.run_and_wait(job(config))

    results = run.results()
    assert run.status is RunStatus.COMPLETED
    assert all(result.attempts == 1 for result in results)
    assert sorted(result.resubmissions for result in results) == [0] * 4 + [1] * 6
    assert server.counters.batches_created[MODEL] == 2  # the expired six were sent again
    assert server.counters.requests_executed[MODEL] == 10  # ... and each request ran once


@pytest.mark.parametrize("kind", ["missing_line", "unknown_id", "invalid_json_line"])
def test_results_that_name_no_item_lose_nothing(
    runner: BatchRunner, server: LocalBatchServer, config: AnthropicProviderConfig, kind: str
) -> None:
    server.faults.malform_output_share(0.3, kind)  # type: ignore[arg-type]
    run = runner.run_and_wait(job(config, count=20))

    assert run.status is RunStatus.COMPLETED
    assert sorted(result.item_id for result in run.results()) == sorted(
        f"item{n}" for n in range(20)
    )
    assert any(result.resubmissions for result in run.results())


def test_a_full_processing_queue_teaches_its_limit_and_batches_fit_it(
    runner: BatchRunner, tmp_path: Path
) -> None:
    limits = AnthropicLimits(queued_request_limit=30)
    with LocalBatchServer(anthropic_limits=limits, data_dir=tmp_path / "queue") as server:
        config = AnthropicProviderConfig(
            model=MODEL, api_key=API_KEY, base_url=server.url, poll_interval=0.02
        )
        run = runner.run_and_wait(job(config, count=50))

        assert run.status is RunStatus.COMPLETED
        assert all((r.attempts, r.resubmissions) == (1, 0) for r in run.results())
        assert run.summary().learned_limits == {"enqueued_requests": 30}
        assert server.counters.max_queued_requests_seen <= 30


def test_enqueue_limits_keep_the_queue_within_budget_from_the_start(
    runner: BatchRunner, tmp_path: Path
) -> None:
    limits = AnthropicLimits(queued_request_limit=30)
    with LocalBatchServer(anthropic_limits=limits, data_dir=tmp_path / "queue") as server:
        config = AnthropicProviderConfig(
            model=MODEL,
            api_key=API_KEY,
            base_url=server.url,
            poll_interval=0.02,
            enqueue_limits=AnthropicEnqueueLimitConfig(
                enqueued_request_limit=30, max_batch_requests=12
            ),
        )
        run = runner.run_and_wait(job(config, count=50))

        assert run.status is RunStatus.COMPLETED
        assert run.summary().learned_limits == {}  # never refused
        assert server.counters.max_queued_requests_seen <= 21  # 30 * 0.7


@pytest.mark.parametrize(
    ("limits", "learned"),
    [
        (AnthropicLimits(max_requests_per_batch=8), "requests_per_batch"),
        (AnthropicLimits(max_batch_bytes=2_000), "batch_bytes"),
    ],
    ids=["too-many-requests", "too-many-bytes"],
)
def test_a_batch_over_the_per_batch_limits_is_planned_again_within_them(
    runner: BatchRunner, tmp_path: Path, limits: AnthropicLimits, learned: str
) -> None:
    with LocalBatchServer(anthropic_limits=limits, data_dir=tmp_path / "limits") as server:
        config = AnthropicProviderConfig(
            model=MODEL, api_key=API_KEY, base_url=server.url, poll_interval=0.02
        )
        run = runner.run_and_wait(job(config, count=20))

        assert run.status is RunStatus.COMPLETED
        assert all((r.attempts, r.resubmissions) == (1, 0) for r in run.results())
        assert list(run.summary().learned_limits) == [learned]


def test_a_wrong_key_stops_the_run_with_a_message_that_does_not_show_it(
    runner: BatchRunner, tmp_path: Path
) -> None:
    with LocalBatchServer(api_key="sk-ant-the-right-one", data_dir=tmp_path / "auth") as server:
        config = AnthropicProviderConfig(
            model=MODEL, api_key="sk-ant-wrong-key-123456", base_url=server.url
        )
        run = runner.start(job(config))
        with pytest.raises(ProviderAuthenticationError) as raised:
            run.refresh()

    assert "ANTHROPIC_API_KEY" in str(raised.value)
    assert "sk-ant-wrong-key-123456" not in str(raised.value)


def test_a_connection_error_names_the_url_it_tried(runner: BatchRunner) -> None:
    config = AnthropicProviderConfig(
        model=MODEL, api_key=API_KEY, base_url="http://127.0.0.1:9", max_retries=0
    )
    run = runner.start(job(config))
    summary = run.refresh()

    assert summary.last_error is not None
    assert "GET http://127.0.0.1:9/v1/messages/batches" in summary.last_error
    assert API_KEY not in summary.last_error


def test_a_reply_that_does_not_validate_fails_with_the_validation_error(
    runner: BatchRunner, server: LocalBatchServer, config: AnthropicProviderConfig
) -> None:
    server.faults.malform_output_share(1.0, "invalid_reply_text")
    run = runner.run_and_wait(
        job(
            config,
            count=2,
            structured_output=Label,
            retry_policy=RetryPolicy(max_attempts=2, backoff_initial_seconds=0),
        )
    )

    failed = run.results()[0]
    assert failed.status is ItemStatus.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error.code == "invalid_output"


def test_cancel_with_remote_cancels_the_batch_at_anthropic(
    runner: BatchRunner, tmp_path: Path
) -> None:
    pace = BatchPace(in_progress=30)
    with LocalBatchServer(pace=pace, data_dir=tmp_path / "cancel") as server:
        config = AnthropicProviderConfig(
            model=MODEL, api_key=API_KEY, base_url=server.url, poll_interval=0.02
        )
        kept = ArtifactPolicy(delete_provider_files=False)
        run = runner.start(job(config, artifact_policy=kept))
        run.refresh()
        run.cancel(remote=True)
        summary = run.wait(timeout=20)

        (batch,) = server.anthropic.batches.values()
        assert summary.status is RunStatus.CANCELLED
        assert (batch.status, batch.canceled) == ("ended", 10)
        assert {result.error.code for result in run.results() if result.error} == {"run_cancelled"}


def test_the_queue_budget_is_shared_by_every_model_on_the_storage(tmp_path: Path) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        clock=clock, pace=BatchPace(in_progress=10), data_dir=tmp_path / "shared"
    ) as server:
        runner = BatchRunner(storage="memory")
        limits = AnthropicEnqueueLimitConfig(enqueued_request_limit=10)  # 7 at a time

        def start(model: str) -> Run:
            config = AnthropicProviderConfig(
                model=model, api_key=API_KEY, base_url=server.url, enqueue_limits=limits
            )
            return runner.start(job(config, count=6))

        haiku, sonnet = start("claude-haiku-4-5"), start("claude-sonnet-4-5")
        haiku.refresh()
        sonnet.refresh()  # 6 of the 7 are Haiku's: Sonnet may send one request
        in_queue = {b.models[0]: b.request_count for b in server.anthropic.batches.values()}
        assert in_queue == {"claude-haiku-4-5": 6, "claude-sonnet-4-5": 1}

        while not (haiku.status.is_terminal and sonnet.status.is_terminal):
            clock.advance(10)
            haiku.refresh()
            sonnet.refresh()
        assert server.counters.max_queued_requests_seen == 7
        assert server.counters.requests_executed == {
            "claude-haiku-4-5": 6,
            "claude-sonnet-4-5": 6,
        }
