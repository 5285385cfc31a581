"""What batchor sends to Anthropic: requests of any shape, custom ids that fit its
rules, and structured-output schemas it accepts."""

from __future__ import annotations

import base64
import json
import re
import sys
from typing import Any

import anthropic
import pytest
from anthropic_kit import MODEL
from pydantic import BaseModel, ConfigDict, Field

from batchor import (
    AnthropicProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    ConfigurationError,
    ContentPart,
    ItemBuildError,
    Message,
    PromptParts,
    RequestOptions,
    RunStatus,
    StructuredOutputSchemaError,
    Tool,
)
from batchor.testing import LocalBatchServer

LOOKUP = Tool(
    name="lookup_order",
    description="Find an order by its number.",
    parameters={
        "type": "object",
        "properties": {"order": {"type": "string"}},
        "required": ["order"],
        "additionalProperties": False,
    },
)
PDF = base64.b64encode(b"%PDF-1.4 receipt").decode()


@pytest.fixture
def runner() -> BatchRunner:
    return BatchRunner(storage="memory")


def first_params(runner: BatchRunner, job: BatchJob) -> dict[str, Any]:
    line = runner.plan(job).first_request_line
    assert line is not None
    params: dict[str, Any] = json.loads(line)["params"]
    return params


def test_a_conversation_with_an_image_and_a_pdf_becomes_messages_params(
    runner: BatchRunner, config: AnthropicProviderConfig
) -> None:
    def build(item: BatchItem) -> PromptParts:
        return PromptParts(
            messages=[
                Message("system", "You read receipts."),
                Message("user", "Hello"),
                Message("assistant", "Send the receipt."),
                Message(
                    "user",
                    [
                        ContentPart.of_text(item.payload),
                        ContentPart.image_url("https://example.com/r.png"),
                        ContentPart.image_data("aGk=", "image/png"),
                        ContentPart.file_data(PDF, "application/pdf", "receipt.pdf"),
                    ],
                ),
            ],
            options=RequestOptions(
                temperature=0.2,
                top_p=0.9,
                max_output_tokens=50,
                stop=["END"],
                metadata={"user_id": "u-1"},
            ),
        )

    job = BatchJob(
        items=[BatchItem("r1", "What is the total?")], build_prompt=build, provider_config=config
    )
    params = first_params(runner, job)
    run = runner.run_and_wait(job)

    assert run.status is RunStatus.COMPLETED
    assert params["system"] == "You read receipts."
    assert [m["role"] for m in params["messages"]] == ["user", "assistant", "user"]
    assert params["messages"][2]["content"] == [
        {"type": "text", "text": "What is the total?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/r.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "receipt.pdf",
        },
    ]
    assert {key: params[key] for key in ("temperature", "top_p", "max_tokens")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
    }
    assert (params["stop_sequences"], params["metadata"]) == (["END"], {"user_id": "u-1"})


def test_a_forced_tool_call_comes_back_as_tool_calls_json(
    runner: BatchRunner, config: AnthropicProviderConfig
) -> None:
    job = BatchJob(
        items=[BatchItem("r1", "Where is order 42?")],
        build_prompt=lambda item: PromptParts(
            prompt=item.payload, options=RequestOptions(tools=[LOOKUP], tool_choice="lookup_order")
        ),
        provider_config=config,
    )
    params = first_params(runner, job)
    result = runner.run_and_wait(job).results()[0]

    assert params["tools"] == [
        {
            "name": "lookup_order",
            "description": "Find an order by its number.",
            "input_schema": LOOKUP.parameters,
        }
    ]
    assert params["tool_choice"] == {"type": "tool", "name": "lookup_order"}
    (call,) = json.loads(result.output_text or "")["tool_calls"]
    assert call["name"] == "lookup_order" and set(call["arguments"]) == {"order"}


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        (PromptParts(prompt="x", options=RequestOptions(metadata={"team": "a"})), "metadata"),
        (PromptParts(prompt="x", options=RequestOptions(tool_choice="nope")), "tool_choice"),
        (
            PromptParts(messages=[Message("user", [ContentPart.file_data("eA==", "text/csv")])]),
            "messages",
        ),
        (
            PromptParts(messages=[Message("user", [ContentPart.image_data("eA==", "image/tiff")])]),
            "messages",
        ),
    ],
    ids=["metadata-keys", "unknown-tool", "csv-file", "tiff-image"],
)
def test_what_anthropic_cannot_take_fails_the_ingest_naming_the_field(
    runner: BatchRunner, config: AnthropicProviderConfig, prompt: PromptParts, field: str
) -> None:
    job = BatchJob(
        items=[BatchItem("r1", "x")], build_prompt=lambda item: prompt, provider_config=config
    )
    with pytest.raises(ItemBuildError, match=field):
        runner.start(job)


def test_item_ids_that_do_not_fit_custom_ids_are_mapped_without_collisions(
    runner: BatchRunner, config: AnthropicProviderConfig, server: LocalBatchServer
) -> None:
    ids = ["plain-id_1", "with space", "ünïcode", "x" * 80, "row--1", "row", "a.b/c"]
    job = BatchJob(
        items=[BatchItem(item_id, item_id) for item_id in ids],
        build_prompt=lambda item: PromptParts(prompt=f"echo {item.payload}"),
        provider_config=config,
    )
    run = runner.run_and_wait(job)

    assert run.status is RunStatus.COMPLETED
    replies = {result.item_id: result.output_text for result in run.results()}
    assert replies == {item_id: f"Local reply to: echo {item_id}"[:96] for item_id in ids}


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(description="the class")
    score: float = Field(ge=0, le=1)
    reasons: list[str] = Field(min_length=2)


def test_the_structured_output_schema_is_the_one_the_sdk_would_send() -> None:
    config = AnthropicProviderConfig(model=MODEL)
    assert config.output_schema(Verdict) == anthropic.transform_schema(Verdict)


class Tagged(BaseModel):
    tags: dict[str, int]


class Tree(BaseModel):
    children: list[Tree]


@pytest.mark.parametrize(
    ("model", "path"),
    [(Tagged, "#/properties/tags"), (Tree, "#/$defs/Tree/properties/children/items")],
    ids=["open-object", "recursive"],
)
def test_schemas_anthropic_rejects_are_refused_naming_the_path(
    model: type[BaseModel], path: str
) -> None:
    with pytest.raises(StructuredOutputSchemaError) as raised:
        AnthropicProviderConfig(model=MODEL).output_schema(model)
    assert raised.value.path == path and path in str(raised.value)


def test_request_options_cannot_take_what_batchor_builds() -> None:
    with pytest.raises(ConfigurationError, match="max_tokens"):
        AnthropicProviderConfig(model=MODEL, request_options={"max_tokens": 5})


def test_a_missing_key_says_where_to_put_it(runner: BatchRunner, server: LocalBatchServer) -> None:
    config = AnthropicProviderConfig(model=MODEL, base_url=server.url)
    run = runner.start(
        BatchJob(
            items=[BatchItem("r1", "x")],
            build_prompt=lambda i: PromptParts(prompt="x"),
            provider_config=config,
        )
    )
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        run.refresh()


def test_without_the_sdk_requests_are_built_and_driving_names_the_extra(
    runner: BatchRunner, config: AnthropicProviderConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if it were not installed
    run = runner.start(
        BatchJob(
            items=[BatchItem("r1", "x")],
            build_prompt=lambda i: PromptParts(prompt="x"),
            provider_config=config,
        )
    )
    assert run.summary().total_items == 1
    with pytest.raises(ConfigurationError, match=re.escape("batchor-core[anthropic]")):
        run.refresh()
