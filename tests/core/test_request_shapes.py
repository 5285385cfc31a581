"""Requests of any shape: conversations, images and files, per-request options, tools.

``PromptParts(messages=[...], options=RequestOptions(...))`` is one neutral form;
the provider translates it. What it cannot express fails the ingest, naming the
item and the field, before anything is stored.
"""

from __future__ import annotations

import json

import pytest

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ContentPart,
    ItemBuildError,
    Message,
    OpenAIProviderConfig,
    PromptParts,
    RequestOptions,
    RunStatus,
    Tool,
)


@pytest.fixture
def runner() -> BatchRunner:
    """The request's shape is the provider's business; one storage is enough."""
    return BatchRunner(storage="memory")


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


def conversation(item: BatchItem) -> PromptParts:
    return PromptParts(
        messages=[
            Message("system", "You read receipts."),
            Message("user", "Hello"),
            Message("assistant", "Send the receipt."),
            Message(
                "user",
                [ContentPart.of_text(item.payload), ContentPart.image_url("https://x/r.png")],
            ),
        ],
        options=RequestOptions(temperature=0.2, max_output_tokens=50, metadata={"n": "1"}),
    )


def first_body(runner: BatchRunner, job: BatchJob) -> dict[str, object]:
    line = runner.plan(job).first_request_line
    assert line is not None
    body: dict[str, object] = json.loads(line)["body"]
    return body


def test_a_conversation_with_an_image_becomes_a_responses_request(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=[BatchItem("r1", "What is the total?")],
        build_prompt=conversation,
        provider_config=provider_config,
    )

    body = first_body(runner, job)
    run = runner.run_and_wait(job)

    assert body["instructions"] == "You read receipts."
    assert body["input"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Send the receipt."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is the total?"},
                {"type": "input_image", "image_url": "https://x/r.png"},
            ],
        },
    ]
    assert (body["temperature"], body["max_output_tokens"]) == (0.2, 50)
    assert body["metadata"] == {"n": "1"}
    assert run.status is RunStatus.COMPLETED


def test_tools_and_a_forced_choice_become_chat_completion_functions(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    chat = provider_config.model_copy(update={"endpoint": "/v1/chat/completions"})
    job = BatchJob(
        items=[BatchItem("o1", "Where is order 42?")],
        build_prompt=lambda item: PromptParts(
            prompt=item.payload,
            options=RequestOptions(tools=[LOOKUP], tool_choice="lookup_order", stop=["END"]),
        ),
        provider_config=chat,
    )

    body = first_body(runner, job)

    assert body["messages"] == [{"role": "user", "content": "Where is order 42?"}]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "parameters": LOOKUP.parameters,
                "description": "Find an order by its number.",
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup_order"}}
    assert body["stop"] == ["END"]
    assert runner.run_and_wait(job).status is RunStatus.COMPLETED


def test_what_the_endpoint_cannot_take_fails_the_ingest_naming_item_and_field(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=[BatchItem("ok", "fine"), BatchItem("bad", "stop here")],
        build_prompt=lambda item: PromptParts(
            prompt=item.payload,
            options=RequestOptions(stop=["x"]) if item.item_id == "bad" else None,
        ),
        provider_config=provider_config,
    )

    with pytest.raises(ItemBuildError, match=r"item 'bad'.*options\.stop: /v1/responses"):
        runner.start(job, run_id="shapes")

    assert runner.get_run("shapes").summary().total_items == 0


def test_messages_without_a_user_turn_are_refused(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    job = BatchJob(
        items=[BatchItem("a", "x")],
        build_prompt=lambda item: PromptParts(messages=[Message("system", "only this")]),
        provider_config=provider_config,
    )

    with pytest.raises(ItemBuildError, match="have no user message"):
        runner.plan(job)
