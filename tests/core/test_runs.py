"""A run end to end through the local server, on every storage backend."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    ItemStatus,
    OpenAIEnqueueLimitConfig,
    OpenAIProviderConfig,
    PromptParts,
    RunNotFinishedError,
    RunNotFoundError,
    RunStatus,
)
from batchor.testing import LocalBatchServer


class Sentiment(BaseModel):
    label: str
    score: float


def items(count: int, prefix: str = "row") -> list[BatchItem]:
    return [
        BatchItem(item_id=f"{prefix}{n}", payload={"text": f"text number {n}"}, metadata={"n": n})
        for n in range(count)
    ]


def prompt(item: BatchItem) -> PromptParts:
    return PromptParts(prompt=item.payload["text"], system_prompt="Be brief.")


def test_a_text_job_completes_with_one_result_per_item(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    run = runner.run_and_wait(
        BatchJob(items=items(25), build_prompt=prompt, provider_config=provider_config)
    )

    assert run.status is RunStatus.COMPLETED
    results = run.results()
    assert sorted(r.item_id for r in results) == sorted(f"row{n}" for n in range(25))
    assert [r.sequence for r in results] == list(range(1, 26))
    assert all(r.status is ItemStatus.COMPLETED and r.output_text for r in results)
    assert all(r.attempts == 1 and r.usage.input_tokens > 0 for r in results)
    assert results[0].metadata == {"n": int(results[0].item_id[3:])}


def test_structured_output_is_parsed_into_the_model(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=items(10),
        build_prompt=prompt,
        provider_config=provider_config,
        structured_output=Sentiment,
    )
    run = runner.run_and_wait(job)

    result = run.results()[0]
    assert isinstance(result.output, Sentiment)
    assert Sentiment.model_validate_json(result.output_text or "") == result.output


def test_chat_completions_endpoint_is_supported(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    config = OpenAIProviderConfig(
        model="gpt-4.1-mini",
        api_key="sk-test",
        base_url=server.base_url,
        endpoint="/v1/chat/completions",
    )
    job = BatchJob(
        items=items(5), build_prompt=prompt, provider_config=config, structured_output=Sentiment
    )
    run = runner.run_and_wait(job)
    assert run.status is RunStatus.COMPLETED
    assert all(isinstance(result.output, Sentiment) for result in run.results())


def test_summary_reports_counts_tokens_and_cost(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    run = runner.run_and_wait(
        BatchJob(items=items(8), build_prompt=prompt, provider_config=provider_config)
    )
    summary = run.summary()

    assert (summary.total_items, summary.completed_items, summary.failed_items) == (8, 8, 0)
    assert summary.batches_total == 1 and summary.batches_in_flight == 0
    assert summary.input_tokens > 0 and summary.output_tokens > 0
    assert summary.estimated_cost_usd is not None and summary.estimated_cost_usd > 0
    assert summary.estimated_input_tokens >= summary.input_tokens


def test_start_returns_before_any_batch_and_results_are_terminal_only(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    run = runner.start(
        BatchJob(items=items(3), build_prompt=prompt, provider_config=provider_config)
    )

    assert run.status is RunStatus.RUNNING
    assert run.summary().pending_items == 3
    assert server.batches == {}
    with pytest.raises(RunNotFinishedError, match="terminal-only"):
        run.results()
    run.wait()
    assert len(run.results()) == 3


def test_a_run_is_rehydrated_by_id(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    started = runner.start(
        BatchJob(
            items=items(4),
            build_prompt=prompt,
            provider_config=provider_config,
            structured_output=Sentiment,
        ),
        run_id="rehydrate_me",
    )
    again = BatchRunner(
        storage=runner.storage, artifact_store=runner.artifact_store, api_key="sk-other"
    )
    run = again.get_run("rehydrate_me")

    assert run.run_id == started.run_id
    run.wait()
    assert all(isinstance(result.output, Sentiment) for result in run.results())
    assert [r.run_id for r in again.list_runs()] == ["rehydrate_me"]


def test_unknown_run_id_is_a_clear_error(runner: BatchRunner) -> None:
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        runner.get_run("nope")


def test_large_jobs_use_the_largest_batches_that_fit(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    job = BatchJob(
        items=items(250),
        build_prompt=prompt,
        provider_config=provider_config,
        chunk_policy=ChunkPolicy(max_requests_per_batch=100, ingest_slice_size=64),
    )
    run = runner.run_and_wait(job)

    assert run.summary().completed_items == 250
    sizes = sorted(batch.request_count for batch in server.batches.values())
    assert sizes == [50, 100, 100]


def test_enqueued_tokens_stay_within_the_budget(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    limits = OpenAIEnqueueLimitConfig(enqueued_token_limit=2_000, target_ratio=0.5)
    config = OpenAIProviderConfig(
        model="gpt-4.1", api_key="sk-test", base_url=server.base_url, enqueue_limits=limits
    )
    run = runner.run_and_wait(
        BatchJob(items=items(60), build_prompt=prompt, provider_config=config)
    )

    assert run.summary().completed_items == 60
    assert len(server.batches) > 1
    assert max(server.max_enqueued_tokens_seen.values()) <= limits.enqueued_token_budget


def test_a_run_driven_by_another_live_process_is_left_alone(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, server: LocalBatchServer
) -> None:
    run = runner.start(
        BatchJob(items=items(3), build_prompt=prompt, provider_config=provider_config)
    )
    record = runner.storage.runs.get(run.run_id)
    assert record is not None
    other = "another-host:4242:feedbeef"
    assert runner.storage.runs.try_acquire_lease(record.run_pk, other, now=time.time(), ttl=60)

    assert run.refresh().pending_items == 3
    assert server.batches == {}

    runner.storage.runs.release_lease(record.run_pk, other)
    assert run.wait().status is RunStatus.COMPLETED


def test_a_rehydrated_run_can_be_pointed_at_a_new_api_address(
    runner: BatchRunner, server: LocalBatchServer
) -> None:
    moved = OpenAIProviderConfig(
        model="gpt-4.1", api_key="sk-test", base_url="http://127.0.0.1:9/v1"
    )
    started = runner.start(BatchJob(items=items(3), build_prompt=prompt, provider_config=moved))
    elsewhere = BatchRunner(
        storage=runner.storage,
        artifact_store=runner.artifact_store,
        api_key="sk-test",
        base_url=server.base_url,
    )
    assert elsewhere.get_run(started.run_id).wait().status is RunStatus.COMPLETED


def test_operational_settings_may_change_when_resuming_a_start(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    runner.start(
        BatchJob(items=items(3), build_prompt=prompt, provider_config=provider_config),
        run_id="tuned",
    )
    tuned = provider_config.model_copy(update={"poll_interval": 0.5, "max_retries": 1})
    run = runner.start(
        BatchJob(items=items(3), build_prompt=prompt, provider_config=tuned), run_id="tuned"
    )
    assert run.summary().total_items == 3
