"""Batches API: create, lifecycle, output shapes, list, cancel, responders."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from local_server_kit import MODEL, BatchKit, make_client
from openai.types import (
    Completion,
    CreateEmbeddingResponse,
    ImagesResponse,
    ModerationCreateResponse,
)
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel, ConfigDict

from batchor.testing import BatchPace, LocalBatchServer, ManualClock, UsageSplit


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Literal["spam", "ham"]
    score: float
    reasons: list[str]


def _strict_schema() -> dict[str, Any]:
    schema = Verdict.model_json_schema()
    schema["additionalProperties"] = False
    return schema


def test_create_returns_validating_and_the_next_retrieve_is_completed(kit: BatchKit) -> None:
    created = kit.submit(
        [BatchKit.responses_request("a"), BatchKit.responses_request("b")],
        metadata={"run_id": "r1"},
    )

    batch = kit.retrieve(created)

    assert created.status == "validating"
    assert created.request_counts is not None and created.request_counts.total == 0
    assert batch.status == "completed"
    assert batch.model == MODEL
    assert batch.metadata == {"run_id": "r1"}
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (2, 2)
    assert batch.request_counts.failed == 0
    assert batch.error_file_id is None
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.created_at <= batch.in_progress_at <= batch.completed_at  # type: ignore[operator]
    assert batch.finalizing_at is not None
    assert batch.usage is not None and batch.usage.input_tokens > 0


def test_responses_output_lines_are_sdk_responses_echoing_the_prompt(kit: BatchKit) -> None:
    batch = kit.retrieve(kit.submit([BatchKit.responses_request("a", "What is batching?")]))

    line = kit.outputs(batch)["a"]
    response = Response.model_validate(line["response"]["body"])

    assert response.status == "completed"
    assert "What is batching?" in response.output_text
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + (
        response.usage.output_tokens
    )
    assert line["response"]["request_id"].startswith("req_")


def test_json_schema_responses_reply_with_an_instance_of_the_schema(kit: BatchKit) -> None:
    text_format = {
        "format": {
            "type": "json_schema",
            "name": "verdict",
            "strict": True,
            "schema": _strict_schema(),
        }
    }
    requests = [
        BatchKit.responses_request(f"r{i}", f"mail {i}", text=text_format) for i in range(20)
    ]

    outputs = kit.outputs(kit.retrieve(kit.submit(requests)))

    for line in outputs.values():
        response = Response.model_validate(line["response"]["body"])
        Verdict.model_validate_json(response.output_text)
        assert response.text is not None and response.text.format is not None
        assert response.text.format.type == "json_schema"
    assert (
        len(
            {
                line["response"]["body"]["output"][0]["content"][0]["text"]
                for line in outputs.values()
            }
        )
        > 1
    )


def test_chat_completions_batch_replies_follow_response_format(kit: BatchKit) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "strict": True, "schema": _strict_schema()},
    }
    requests = [
        BatchKit.chat_request("plain", "Hello there"),
        BatchKit.chat_request("typed", "Classify me", response_format=response_format),
    ]

    outputs = kit.outputs(kit.retrieve(kit.submit(requests, endpoint="/v1/chat/completions")))

    plain = ChatCompletion.model_validate(outputs["plain"]["response"]["body"])
    typed = ChatCompletion.model_validate(outputs["typed"]["response"]["body"])
    assert "Hello there" in (plain.choices[0].message.content or "")
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage is not None and plain.usage.prompt_tokens > 0
    Verdict.model_validate_json(typed.choices[0].message.content or "")


def test_embeddings_batch_returns_one_deterministic_vector_per_input(kit: BatchKit) -> None:
    requests = [
        BatchKit.embeddings_request("one", "alpha"),
        BatchKit.embeddings_request("two", ["alpha", "beta"]),
    ]

    outputs = kit.outputs(kit.retrieve(kit.submit(requests, endpoint="/v1/embeddings")))

    one = CreateEmbeddingResponse.model_validate(outputs["one"]["response"]["body"])
    two = CreateEmbeddingResponse.model_validate(outputs["two"]["response"]["body"])
    assert len(one.data) == 1 and len(two.data) == 2
    assert one.data[0].embedding == two.data[0].embedding
    assert one.data[0].embedding != two.data[1].embedding
    assert len(one.data[0].embedding) == 8


def test_batch_moves_through_each_phase_at_the_configured_pace(tmp_path: Path) -> None:
    clock = ManualClock()
    pace = BatchPace(validating=10, in_progress=100, finalizing=5)
    with LocalBatchServer(pace=pace, clock=clock, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        batch = kit.submit([BatchKit.responses_request(str(i)) for i in range(10)])
        seen = []
        for step in (9, 1, 50, 50, 4, 1):
            clock.advance(step)
            current = kit.retrieve(batch)
            assert current.request_counts is not None
            seen.append((current.status, current.request_counts.completed))

    assert seen == [
        ("validating", 0),
        ("in_progress", 0),
        ("in_progress", 5),
        ("finalizing", 10),
        ("finalizing", 10),
        ("completed", 10),
    ]
    assert current.in_progress_at == int(clock() - 105)
    assert current.finalizing_at == int(clock() - 5)
    assert current.completed_at == int(clock())


def test_list_is_newest_first_with_metadata_and_pages(kit: BatchKit, client: openai.OpenAI) -> None:
    ids = [
        kit.submit([BatchKit.responses_request("a")], metadata={"key": str(i)}).id for i in range(5)
    ]

    first = client.batches.list(limit=2)
    second = client.batches.list(limit=2, after=first.data[-1].id)
    everything = list(client.batches.list(limit=2))

    assert [b.id for b in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert [b.id for b in second.data] == ids[::-1][2:4]
    assert [b.id for b in everything] == ids[::-1]
    assert [b.metadata for b in everything] == [{"key": str(i)} for i in reversed(range(5))]
    assert client.batches.list(limit=2, after=ids[0]).has_more is False


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"endpoint": "/v1/videos"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ],
)
def test_invalid_create_parameters_are_rejected_naming_the_parameter(
    kit: BatchKit, client: openai.OpenAI, arguments: dict[str, Any], param: str
) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])
    call = {"input_file_id": uploaded.id, "endpoint": "/v1/responses", "completion_window": "24h"}

    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(**{**call, **arguments})

    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"


def test_create_with_an_unknown_file_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/responses", completion_window="24h"
        )


def test_create_from_a_file_not_uploaded_for_batch_is_rejected(
    kit: BatchKit, client: openai.OpenAI
) -> None:
    output_file_id = kit.retrieve(kit.submit([BatchKit.responses_request("a")])).output_file_id
    assert output_file_id is not None

    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=output_file_id, endpoint="/v1/responses", completion_window="24h"
        )

    assert caught.value.param == "input_file_id"


def test_retrieve_unknown_batch_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_cancel_keeps_the_requests_already_done(tmp_path: Path) -> None:
    clock = ManualClock()
    pace = BatchPace(in_progress=100, cancelling=10)
    with LocalBatchServer(pace=pace, clock=clock, data_dir=tmp_path / "s") as server:
        client = make_client(server)
        kit = BatchKit(client)
        batch = kit.submit([BatchKit.responses_request(str(i)) for i in range(10)])
        kit.retrieve(batch)
        clock.advance(30)

        cancelling = client.batches.cancel(batch.id)
        clock.advance(9)
        still_cancelling = kit.retrieve(batch)
        clock.advance(1)
        cancelled = kit.retrieve(batch)

        assert cancelling.status == "cancelling"
        assert cancelling.cancelling_at == int(clock() - 10)
        assert still_cancelling.status == "cancelling"
        assert cancelled.status == "cancelled"
        assert cancelled.cancelled_at == int(clock())
        assert sorted(kit.outputs(cancelled)) == ["0", "1", "2"]
        assert cancelled.error_file_id is None
        assert cancelled.request_counts is not None
        assert cancelled.request_counts.completed == 3


def test_cancel_while_validating_produces_no_output(tmp_path: Path) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(validating=60), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        client = make_client(server)
        batch = BatchKit(client).submit([BatchKit.responses_request("a")])

        client.batches.cancel(batch.id)
        cancelled = client.batches.retrieve(batch.id)

    assert cancelled.status == "cancelled"
    assert cancelled.output_file_id is None


def test_cancel_twice_returns_the_same_cancelling_batch(tmp_path: Path) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(in_progress=60, cancelling=60), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        client = make_client(server)
        batch = BatchKit(client).submit([BatchKit.responses_request("a")])

        first = client.batches.cancel(batch.id)
        second = client.batches.cancel(batch.id)

    assert first.status == second.status == "cancelling"
    assert first.cancelling_at == second.cancelling_at


def test_cancel_of_a_completed_batch_is_a_conflict(kit: BatchKit, client: openai.OpenAI) -> None:
    batch = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))

    with pytest.raises(openai.ConflictError) as caught:
        client.batches.cancel(batch.id)

    assert "completed" in caught.value.message


def test_deleting_the_input_file_does_not_disturb_a_running_batch(tmp_path: Path) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(in_progress=60), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        client = make_client(server)
        kit = BatchKit(client)
        batch = kit.submit([BatchKit.responses_request("a")])

        client.files.delete(batch.input_file_id)
        clock.advance(60)
        done = kit.retrieve(batch)

        assert done.status == "completed"
        assert list(kit.outputs(done)) == ["a"]


def test_a_custom_responder_supplies_the_reply_text(tmp_path: Path) -> None:
    def responder(body: dict[str, Any]) -> str | dict[str, Any]:
        if body["input"] == "json please":
            return {"echo": body["input"]}
        return str(body["input"]).upper()

    with LocalBatchServer(responder=responder, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        requests = [
            BatchKit.responses_request("t", "shout"),
            BatchKit.responses_request("j", "json please"),
        ]
        outputs = kit.outputs(kit.retrieve(kit.submit(requests)))

    texts = {
        k: Response.model_validate(v["response"]["body"]).output_text for k, v in outputs.items()
    }
    assert texts["t"] == "SHOUT"
    assert json.loads(texts["j"]) == {"echo": "json please"}


def test_a_raising_responder_fails_only_that_request_with_500(tmp_path: Path) -> None:
    def responder(body: dict[str, Any]) -> str:
        if body["input"] == "boom":
            raise RuntimeError("model exploded")
        return "fine"

    with LocalBatchServer(responder=responder, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        requests = [
            BatchKit.responses_request("ok", "hi"),
            BatchKit.responses_request("bad", "boom"),
        ]
        batch = kit.retrieve(kit.submit(requests))
        outputs, errors = kit.outputs(batch), kit.errors(batch)

    assert batch.status == "completed"
    assert list(outputs) == ["ok"]
    assert errors["bad"]["response"]["status_code"] == 500
    assert "model exploded" in errors["bad"]["response"]["body"]["error"]["message"]
    assert batch.request_counts is not None and batch.request_counts.failed == 1


def test_completions_batch_answers_one_choice_per_prompt(kit: BatchKit) -> None:
    requests = [
        BatchKit.request(
            "/v1/completions", "one", {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi"}
        ),
        BatchKit.request(
            "/v1/completions", "two", {"model": "gpt-3.5-turbo-instruct", "prompt": ["A", "B"]}
        ),
    ]

    outputs = kit.outputs(kit.retrieve(kit.submit(requests, endpoint="/v1/completions")))

    one = Completion.model_validate(outputs["one"]["response"]["body"])
    two = Completion.model_validate(outputs["two"]["response"]["body"])
    assert one.object == "text_completion"
    assert "Hi" in one.choices[0].text
    assert [choice.index for choice in two.choices] == [0, 1]
    assert one.usage is not None and one.usage.prompt_tokens == 1


def test_moderations_batch_answers_one_unflagged_result_per_input(kit: BatchKit) -> None:
    body = {"model": "omni-moderation-latest", "input": ["first", "second"]}

    batch = kit.retrieve(
        kit.submit([BatchKit.request("/v1/moderations", "m", body)], endpoint="/v1/moderations")
    )
    moderation = ModerationCreateResponse.model_validate(
        kit.outputs(batch)["m"]["response"]["body"]
    )

    assert len(moderation.results) == 2
    assert not any(result.flagged for result in moderation.results)
    assert batch.usage is not None and batch.usage.input_tokens == 2 + 2  # ceil(5 / 4), ceil(6 / 4)


def test_image_batches_answer_with_a_png(kit: BatchKit) -> None:
    body = {"model": "gpt-image-1", "prompt": "A lighthouse", "n": 2}

    batch = kit.retrieve(
        kit.submit(
            [BatchKit.request("/v1/images/generations", "i", body)],
            endpoint="/v1/images/generations",
        )
    )
    images = ImagesResponse.model_validate(kit.outputs(batch)["i"]["response"]["body"])

    assert images.data is not None and len(images.data) == 2
    assert base64.b64decode(images.data[0].b64_json or "").startswith(b"\x89PNG")


def test_video_batches_are_refused_as_an_unsupported_endpoint(
    kit: BatchKit, client: openai.OpenAI
) -> None:
    uploaded = kit.upload([BatchKit.request("/v1/videos", "v", {"model": "sora-2"})])

    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/videos", completion_window="24h"
        )

    assert (caught.value.param, caught.value.code) == ("endpoint", "invalid_value")
    assert "'/v1/responses'" in caught.value.message


def test_output_files_expire_as_output_expires_after_says(
    kit: BatchKit, client: openai.OpenAI, clock: ManualClock
) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])
    created = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/responses",
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    output_file_id = kit.retrieve(created).output_file_id
    assert output_file_id is not None

    output = client.files.retrieve(output_file_id)
    clock.advance(7200)

    assert output.expires_at == output.created_at + 7200
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(output_file_id)


def test_output_expires_after_is_validated(kit: BatchKit, client: openai.OpenAI) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])

    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/responses",
            completion_window="24h",
            output_expires_after={"anchor": "created_at", "seconds": 10},
        )

    assert caught.value.param == "output_expires_after.seconds"


def test_usage_reports_cached_and_reasoning_tokens_as_the_usage_split_says(
    tmp_path: Path,
) -> None:
    usage = UsageSplit(cached_fraction=0.5, reasoning_ratio=2)
    prompt = "x" * 40  # 10 tokens
    with LocalBatchServer(
        usage=usage, responder=lambda body: "abcd" * 3, data_dir=tmp_path / "s"
    ) as server:
        kit = BatchKit(make_client(server))
        responses = kit.retrieve(kit.submit([BatchKit.responses_request("r", prompt)]))
        chat = kit.retrieve(
            kit.submit([BatchKit.chat_request("c", prompt)], endpoint="/v1/chat/completions")
        )
        response = Response.model_validate(kit.outputs(responses)["r"]["response"]["body"])
        completion = ChatCompletion.model_validate(kit.outputs(chat)["c"]["response"]["body"])

    assert response.usage is not None
    assert response.usage.input_tokens == 10
    assert response.usage.input_tokens_details.cached_tokens == 5
    assert response.usage.output_tokens == 3 + 6  # 3 text tokens + 2 reasoning per text token
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == (14 // 2)  # 4 + 10 tokens
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 6
    assert responses.usage is not None
    assert (responses.usage.input_tokens, responses.usage.output_tokens) == (10, 9)
    assert responses.usage.input_tokens_details.cached_tokens == 5
    assert responses.usage.output_tokens_details.reasoning_tokens == 6


def test_a_new_batch_reports_zero_usage_until_it_ends(tmp_path: Path) -> None:
    with LocalBatchServer(pace=BatchPace(in_progress=60), data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        batch = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))

    assert batch.status == "in_progress"
    assert batch.usage is not None and batch.usage.total_tokens == 0
