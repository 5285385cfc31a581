"""Bad input gets a clear, typed error, and nothing already stored is lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    ConfigurationError,
    DuplicateItemIdError,
    ItemBuildError,
    OpenAIProviderConfig,
    PromptParts,
    RunStatus,
    StructuredOutputSchemaError,
)


def text_prompt(item: BatchItem) -> PromptParts:
    return PromptParts(prompt=str(item.payload))


def rows(*ids: str) -> list[BatchItem]:
    return [BatchItem(item_id=item_id, payload=f"text of {item_id}") for item_id in ids]


def test_duplicate_item_ids_name_both_positions(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=rows("a", "b", "a"), build_prompt=text_prompt, provider_config=provider_config
    )
    with pytest.raises(
        DuplicateItemIdError, match=r"'a': input position 2 repeats input position 0"
    ):
        runner.start(job)


def test_a_failing_build_prompt_names_the_item(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    def build(item: BatchItem) -> PromptParts:
        if item.item_id == "b":
            raise KeyError("text")
        return text_prompt(item)

    job = BatchJob(items=rows("a", "b"), build_prompt=build, provider_config=provider_config)
    with pytest.raises(
        ItemBuildError, match=r"build_prompt raised for item 'b' \(input position 1\): KeyError"
    ):
        runner.start(job)


def test_an_empty_prompt_is_rejected(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=rows("a"),
        build_prompt=lambda item: PromptParts(prompt="  "),
        provider_config=provider_config,
    )
    with pytest.raises(ItemBuildError, match="empty prompt for item 'a'"):
        runner.start(job)


def test_a_payload_that_is_not_json_is_rejected(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=[BatchItem(item_id="a", payload={"when": object()})],
        build_prompt=lambda item: PromptParts(prompt="hello"),
        provider_config=provider_config,
    )
    with pytest.raises(ItemBuildError, match=r"payload of item .a. .* not JSON-serialisable"):
        runner.start(job)


def test_empty_item_ids_are_rejected_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="item_id must be a non-empty string"):
        BatchItem(item_id="", payload="x")


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(
        ConfigurationError,
        match="enqueue_limits: invalid OpenAIEnqueueLimitConfig: enqueued_token_limit: "
        "Input should be greater than 0",
    ):
        OpenAIProviderConfig(model="gpt-4.1", enqueue_limits={"enqueued_token_limit": -1})  # type: ignore[arg-type]


def test_an_invalid_schema_is_rejected_before_anything_is_stored(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    class Loose(BaseModel):
        label: str = "none"

    job = BatchJob(
        items=rows("a"),
        build_prompt=text_prompt,
        provider_config=provider_config,
        structured_output=Loose,
    )
    with pytest.raises(StructuredOutputSchemaError, match="#/properties/label"):
        runner.start(job, run_id="never_stored")
    assert runner.storage.runs.get("never_stored") is None


def test_an_unimportable_structured_output_class_is_named_in_each_rehydrated_result(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    class LocalOnly(BaseModel):
        label: str

    runner.run_and_wait(
        BatchJob(
            items=rows("a"),
            build_prompt=text_prompt,
            provider_config=provider_config,
            structured_output=LocalOnly,
        ),
        run_id="local_model",
    )
    fresh = BatchRunner(storage=runner.storage, artifact_store=runner.artifact_store)
    (result,) = fresh.get_run("local_model").results()

    assert result.output is None and result.output_text is not None
    assert result.output_error is not None and "LocalOnly" in result.output_error


def test_an_error_mid_input_keeps_what_was_stored_and_the_run_resumes(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    broken = {"value": True}

    def items() -> Iterator[BatchItem]:
        for n in range(30):
            if n == 25 and broken["value"]:
                raise ValueError("the input broke at row 25")
            yield BatchItem(item_id=f"r{n}", payload=f"row {n}")

    def job() -> BatchJob:
        return BatchJob(
            items=items(),
            build_prompt=text_prompt,
            provider_config=provider_config,
            chunk_policy=ChunkPolicy(ingest_slice_size=10),
        )

    with pytest.raises(ValueError, match="row 25"):
        runner.start(job(), run_id="resumable")
    stored = runner.get_run("resumable").summary()
    assert (stored.total_items, stored.ingest_complete) == (20, False)

    broken["value"] = False
    run = runner.start(job(), run_id="resumable")
    assert run.summary().total_items == 30
    run.wait()
    assert run.status is RunStatus.COMPLETED
    assert sorted(result.item_id for result in run.results()) == sorted(f"r{n}" for n in range(30))


def test_a_run_starts_without_a_key_and_driving_it_asks_for_one(runner: BatchRunner) -> None:
    config = OpenAIProviderConfig(model="gpt-4.1", base_url="http://127.0.0.1:9/v1")
    run = runner.start(BatchJob(items=rows("a"), build_prompt=text_prompt, provider_config=config))

    assert run.summary().pending_items == 1
    with pytest.raises(ConfigurationError, match="no OpenAI API key"):
        run.refresh()
