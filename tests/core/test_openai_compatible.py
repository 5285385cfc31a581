"""OpenAI-compatible services: Azure OpenAI through the SDK's ``AzureOpenAI`` client,
other services by base URL with their own limits."""

from __future__ import annotations

import json

import pytest

from batchor import (
    AzureOpenAIProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    ConfigurationError,
    OpenAIProviderConfig,
    PromptParts,
    RunStatus,
)
from batchor.testing import LocalBatchServer


def job(config: OpenAIProviderConfig | AzureOpenAIProviderConfig, count: int = 4) -> BatchJob:
    return BatchJob(
        items=[BatchItem(f"i{n}", f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=config,
    )


def test_an_azure_run_uses_the_deployment_and_azure_request_urls(
    server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key")
    runner = BatchRunner(storage="memory")
    azure = AzureOpenAIProviderConfig(model="gpt-4.1-mini-batch", api_version="2025-04-01-preview")

    line = json.loads(runner.plan(job(azure)).first_request_line or "{}")
    run = runner.run_and_wait(job(azure))

    assert (line["url"], line["body"]["model"]) == ("/chat/completions", "gpt-4.1-mini-batch")
    assert run.status is RunStatus.COMPLETED and run.summary().provider == "azure"
    assert server.call_counts["POST /openai/batches"] == 1


def test_azure_without_an_endpoint_says_which_variables_to_set() -> None:
    runner = BatchRunner(storage="memory")
    run = runner.start(job(AzureOpenAIProviderConfig(model="deployment")))

    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY"):
        run.refresh()


def test_a_service_with_a_smaller_per_batch_limit_is_planned_within_it(
    server: LocalBatchServer,
) -> None:
    service = OpenAIProviderConfig(
        model="llama-3.3-70b",
        api_key="sk-service",
        base_url=server.base_url,
        completion_window="24h",
        max_requests_per_batch=3,
    )

    run = BatchRunner(storage="memory").run_and_wait(job(service, count=7))

    assert run.summary().batches_total == 3 and run.status is RunStatus.COMPLETED


def test_completion_windows_are_any_hours_or_days() -> None:
    assert OpenAIProviderConfig(model="m", completion_window="7d").completion_window == "7d"
    with pytest.raises(ConfigurationError, match="completion_window"):
        OpenAIProviderConfig(model="m", completion_window="two weeks")
