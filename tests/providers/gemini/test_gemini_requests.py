"""What batchor sends Gemini, what it reads back, and what it leaves behind: request
shapes, structured output under Gemini's schema rules, usage and cost, settings."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import pytest
from gemini_kit import GEMINI_KEY, MODEL
from pydantic import BaseModel, Field

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ConfigurationError,
    ContentPart,
    EnqueueLimitConfig,
    GeminiProviderConfig,
    ItemBuildError,
    Message,
    ModelPrice,
    PromptParts,
    ProviderAuthenticationError,
    RequestOptions,
    StructuredOutputSchemaError,
    Tool,
    Usage,
)
from batchor.providers.gemini import parse_gemini_result
from batchor.testing import LocalBatchServer, UsageSplit, default_responder


def run_one(server: LocalBatchServer, prompt: PromptParts, **job: Any) -> Any:
    config = GeminiProviderConfig(
        model=MODEL,
        api_key=GEMINI_KEY,
        base_url=server.gemini_url,
        **job.pop("config", {}),
    )
    return BatchRunner(storage="memory").run_and_wait(
        BatchJob(
            items=[BatchItem(item_id="a", payload=None)],
            build_prompt=lambda item: prompt,
            provider_config=config,
            **job,
        )
    )


def recording_server(seen: list[dict[str, Any]], **options: Any) -> LocalBatchServer:
    def responder(body: dict[str, Any]) -> str | dict[str, Any]:
        seen.append(body)
        return default_responder(body)

    return LocalBatchServer(responder=responder, **options)


def test_a_conversation_with_images_files_and_options_reaches_gemini_in_its_shape() -> None:
    weather = Tool(
        name="get_weather",
        description="The weather in a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    prompt = PromptParts(
        system_prompt="Be brief.",
        messages=[
            Message("user", "Hello"),
            Message("assistant", "Hi! What can I do?"),
            Message(
                "user",
                [
                    ContentPart.of_text("Describe these."),
                    ContentPart.image_url("https://example.com/cat.png"),
                    ContentPart.image_data("aGVsbG8=", "image/jpeg"),
                    ContentPart.file_data("JVBERi0=", "application/pdf", "report.pdf"),
                ],
            ),
        ],
        options=RequestOptions(
            temperature=0.2,
            top_p=0.9,
            max_output_tokens=256,
            stop=["END"],
            tools=[weather],
            tool_choice="get_weather",
            metadata={"team": "search"},
        ),
    )
    seen: list[dict[str, Any]] = []
    with recording_server(seen) as server:
        run = run_one(server, prompt, config={"request_options": {"safetySettings": []}})

    assert run.results()[0].output_text == "Local reply to: Describe these."
    (request,) = seen
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [content["role"] for content in request["contents"]] == ["user", "model", "user"]
    assert request["contents"][2]["parts"] == [
        {"text": "Describe these."},
        {"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "aGVsbG8="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]
    assert request["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "stopSequences": ["END"],
    }
    assert request["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": dict(weather.parameters),
                    "description": "The weather in a city",
                }
            ]
        }
    ]
    assert request["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert request["labels"] == {"team": "search"}
    assert request["safetySettings"] == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (RequestOptions(stop=["a", "b", "c", "d", "e", "f"]), "options.stop"),
        (RequestOptions(tool_choice="missing"), "options.tool_choice"),
        (RequestOptions(metadata={"Team Name": "x"}), "options.metadata"),
    ],
)
def test_a_request_gemini_cannot_take_fails_the_ingest_naming_the_field(
    gemini_config: GeminiProviderConfig, options: RequestOptions, field: str
) -> None:
    job = BatchJob(
        items=[BatchItem(item_id="a")],
        build_prompt=lambda item: PromptParts(prompt="hi", options=options),
        provider_config=gemini_config,
    )
    with pytest.raises(ItemBuildError, match=field):
        BatchRunner(storage="memory").start(job)


def test_a_function_call_reply_comes_back_as_tool_calls_text() -> None:
    record = {
        "key": "a",
        "response": {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "thinking...", "thought": True},
                            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4},
        },
    }
    outcome = parse_gemini_result("a", record)
    assert json.loads(outcome.output_text or "") == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    }
    assert outcome.usage == Usage(input_tokens=10, output_tokens=4)


@pytest.mark.parametrize(
    ("reason", "code", "retryable"),
    [("MAX_TOKENS", "incomplete_output", False), ("SAFETY", "finish_safety", False)],
)
def test_a_reply_that_did_not_finish_is_a_failure(reason: str, code: str, retryable: bool) -> None:
    candidate = {"content": {"parts": [{"text": "{"}]}, "finishReason": reason}
    outcome = parse_gemini_result("a", {"key": "a", "response": {"candidates": [candidate]}})
    assert (outcome.succeeded, outcome.error_code, outcome.retryable) == (False, code, retryable)


class Address(BaseModel):
    city: str


class Contact(BaseModel):
    kind: Literal["person"]
    name: str
    address: Address
    tags: dict[str, int]


class Node(BaseModel):
    label: str
    children: list[Node]


class Strict(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}$")


class Dated(BaseModel):
    id: str = Field(json_schema_extra={"format": "uuid"})


def test_structured_output_is_sent_as_json_schema_and_validated(
    gemini_config: GeminiProviderConfig,
) -> None:
    schema = gemini_config.output_schema(Contact)
    assert "$defs" not in schema
    assert schema["properties"]["address"]["properties"] == {
        "city": {"title": "City", "type": "string"}
    }
    assert schema["properties"]["kind"]["enum"] == ["person"]
    assert schema["properties"]["tags"]["additionalProperties"] == {"type": "integer"}
    assert "$defs" in gemini_config.output_schema(Node), "a recursive schema keeps its $ref"


@pytest.mark.parametrize(
    ("model", "path", "what"),
    [(Strict, "#/properties/code", "pattern"), (Dated, "#/properties/id", "format 'uuid'")],
)
def test_a_constraint_gemini_does_not_enforce_is_refused_naming_its_path(
    gemini_config: GeminiProviderConfig, model: type[BaseModel], path: str, what: str
) -> None:
    with pytest.raises(StructuredOutputSchemaError, match=what) as raised:
        gemini_config.output_schema(model)
    assert raised.value.path == path


def test_structured_replies_parse_as_the_model(server: LocalBatchServer) -> None:
    seen: list[dict[str, Any]] = []
    with recording_server(seen) as recording:
        run = run_one(recording, PromptParts(prompt="Who is this?"), structured_output=Contact)
    result = run.results()[0]
    assert isinstance(result.output, Contact)
    generation = seen[0]["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"]["title"] == "Contact"


def test_usage_and_cost_follow_gemini_batch_prices() -> None:
    usage = UsageSplit(cached_fraction=0.5, reasoning_ratio=1.0)
    with LocalBatchServer(usage=usage, responder=lambda body: "abcdefgh") as server:
        run = run_one(server, PromptParts(prompt="x" * 40))
    result = run.results()[0]
    # 40 bytes + 4 per content = 14 prompt tokens, 7 cached; 2 text + 2 thinking tokens out
    assert (result.usage.input_tokens, result.usage.cached_input_tokens) == (14, 7)
    assert (result.usage.output_tokens, result.usage.reasoning_tokens) == (4, 2)
    price = ModelPrice(input=0.15, cached_input=0.0375, output=1.25)
    assert run.summary().cost_usd == pytest.approx(
        price.cost_usd(Usage(input_tokens=14, cached_input_tokens=7, output_tokens=4))
    )


def test_a_collected_batch_leaves_nothing_behind_at_the_provider(server: LocalBatchServer) -> None:
    run = run_one(server, PromptParts(prompt="hello"))
    assert run.results()[0].output_text == "Local reply to: hello"
    assert server.gemini.store.files == {} and server.gemini.store.batches == {}
    assert server.counters.files_deleted == {"batch": 1, "batch_output": 1}


def test_the_key_and_the_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_from_environment() -> Any:
        return BatchRunner(storage="memory").run_and_wait(
            BatchJob(
                items=[BatchItem(item_id="a")],
                build_prompt=lambda item: PromptParts(prompt="hi"),
                provider_config=GeminiProviderConfig(model=MODEL),
            )
        )

    with LocalBatchServer(api_key="AIza-google") as server:
        monkeypatch.setenv("GEMINI_BASE_URL", server.gemini_url)
        monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google")
        assert run_from_environment().results()[0].output_text == "Local reply to: hi"
        monkeypatch.setenv("GEMINI_API_KEY", "AIza-gemini-comes-first")
        with pytest.raises(ProviderAuthenticationError, match="API key not valid"):
            run_from_environment()


def test_no_key_anywhere_is_a_configuration_error(server: LocalBatchServer) -> None:
    config = GeminiProviderConfig(model=MODEL, base_url=server.gemini_url)
    run = BatchRunner(storage="memory").start(
        BatchJob(
            items=[BatchItem(item_id="a")],
            build_prompt=lambda item: PromptParts(prompt="hi"),
            provider_config=config,
        )
    )
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        run.refresh()


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.genai", None)
    config = GeminiProviderConfig(model=MODEL)
    with pytest.raises(ConfigurationError, match=r"batchor-core\[gemini\]"):
        config.create_provider(api_key=None, output_schema=None, schema_name="output")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.1}, "generationConfig"),
        ({"generation_config": {}}, "'generationConfig' \\(camelCase\\)"),
        ({"contents": []}, "batchor builds it"),
        ({"candidates": 2}, "not a GenerateContentRequest field"),
    ],
)
def test_request_options_are_checked_naming_the_field(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GeminiProviderConfig(model=MODEL, request_options=options)


def test_the_config_knows_the_model_its_price_and_its_limits() -> None:
    config = GeminiProviderConfig(
        model="models/gemini-2.5-flash-lite",
        request_options={"generationConfig": {"maxOutputTokens": 512}},
        enqueue_limits=EnqueueLimitConfig(enqueued_token_limit=3_000_000),
    )
    assert config.model == "gemini-2.5-flash-lite"
    assert config.max_output_tokens == 512
    assert config.price() == ModelPrice(input=0.05, cached_input=0.0125, output=0.2)
    provider = config.create_provider(api_key=None, output_schema=None, schema_name="output")
    assert provider.limits.max_requests_per_batch == 200_000
    assert provider.enqueue_budget is not None and provider.enqueue_budget.total == 2_100_000
    stored = GeminiProviderConfig.model_validate(config.model_dump())
    assert stored == config and "api_key" not in config.model_dump()
